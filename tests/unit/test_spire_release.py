"""SPIRE's names derived from the release as the spire chart derives them, and its server CLI's entry list."""

from __future__ import annotations

import json

import pytest

from meshid.spire import Entry, SpireRelease, fullname, parse_entries


def test_names_of_the_default_release_are_the_charts():
    # Rendered from spiffe/helm-charts-hardened spire 0.30.0 with release `spire` in namespace `spire`
    # (StatefulSet spire-server, DaemonSets spire-agent and spire-spiffe-csi-driver, ClusterSPIFFEID
    # spire-spire-default with className spire-spire, ValidatingWebhookConfiguration
    # spire-spire-controller-manager-webhook, volumeClaimTemplates spire-data).
    spire = SpireRelease("spire", "spire")
    assert (spire.server, spire.server_pod, spire.agent, spire.csi_driver) == (
        "spire-server", "spire-server-0", "spire-agent", "spire-spiffe-csi-driver")
    assert spire.controller_class == "spire-spire"
    assert spire.data_claim == "spire-data-spire-server-0"


def test_names_follow_any_release_and_namespace():
    spire = SpireRelease("identity", "prod")
    assert spire.node_daemonsets == ("prod-agent", "prod-spiffe-csi-driver")
    assert (spire.server_pod, spire.controller_class) == ("prod-server-0", "identity-prod")


@pytest.mark.parametrize(("release", "component", "name"), [
    ("spire", "server", "spire-server"),
    ("my-server", "server", "my-server"),  # `contains $name .Release.Name`: the release alone
    ("server", "agent", "server-agent"),
    ("a" * 60, "server", "a" * 60 + "-se"),  # trunc 63
])
def test_fullname_is_the_subcharts_helper(release, component, name):
    # spire-server/templates/_helpers.tpl `spire-server.fullname` (the same helper in every subchart)
    assert fullname(release, component) == name


def test_entries_are_read_from_the_clis_json():
    # spiffe/spire cmd/spire-server/cli/entry/show_test.go getJSONPrintedEntry: protojson with proto field names
    text = json.dumps({"entries": [{
        "id": "00000000-0000-0000-0000-000000000000",
        "spiffe_id": {"trust_domain": "example.org", "path": "/ns/demo/sa/default"},
        "parent_id": {"trust_domain": "example.org", "path": "/spire/agent/k8s_psat/c/node-1"},
        "selectors": [{"type": "k8s", "value": "pod-uid:1234"}, {"type": "k8s", "value": "ns:demo"}],
        "x509_svid_ttl": 0, "federates_with": [], "hint": "", "admin": False, "created_at": "1547583197",
        "downstream": False, "expires_at": "0", "dns_names": [], "revision_number": "0", "store_svid": False,
        "jwt_svid_ttl": 0}], "next_page_token": ""})
    assert parse_entries(text) == [Entry("spiffe://example.org/ns/demo/sa/default",
                                         "spiffe://example.org/spire/agent/k8s_psat/c/node-1",
                                         frozenset({"k8s:pod-uid:1234", "k8s:ns:demo"}))]
    assert parse_entries('{"entries": [], "next_page_token": ""}') == []
    with pytest.raises(ValueError):
        parse_entries("Found 0 entries")
    with pytest.raises(ValueError):
        parse_entries('["not", "an", "object"]')
