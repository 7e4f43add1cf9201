"""What meshid reads of helm's JSON: the release after `upgrade --install -o json` and from `get metadata -o json`."""

from __future__ import annotations

import json

import pytest

from meshid.helm import Release

UPGRADE = {"name": "spire", "namespace": "spire", "version": 3, "info": {"status": "deployed"},
           "chart": {"metadata": {"name": "spire", "version": "0.30.0", "appVersion": "1.13.0"},
                     "values": {"global": {"spire": {"trustDomain": "t"}}}},
           "manifest": "---"}
METADATA = {"name": "spire", "chart": "spire", "version": "0.30.0", "appVersion": "1.13.0", "namespace": "spire",
            "revision": 3, "status": "deployed", "deployedAt": "2026-12-01T22:03:28Z"}
EXPECTED = Release(name="spire", namespace="spire", revision=3, status="deployed", chart="spire-0.30.0",
                   app_version="1.13.0")


def test_the_release_helm_upgrade_prints_and_its_metadata_read_the_same():
    assert Release.from_release_json(json.dumps(UPGRADE), "ignored") == EXPECTED
    assert Release.from_metadata_json(json.dumps(METADATA), "ignored") == EXPECTED


def test_an_upgrade_output_without_chart_metadata_is_an_error_not_a_release_named_none():
    broken = {**UPGRADE, "chart": {}}
    with pytest.raises(KeyError):
        Release.from_release_json(json.dumps(broken), "spire")


def test_a_release_installed_client_side_is_known_as_such_from_either_output():
    assert Release.from_metadata_json(json.dumps({**METADATA, "applyMethod": "csa"}), "spire").client_side
    assert not Release.from_metadata_json(json.dumps({**METADATA, "applyMethod": "ssa"}), "spire").client_side
    assert Release.from_release_json(json.dumps({**UPGRADE, "apply_method": "csa"}), "spire").client_side
    assert not Release.from_release_json(json.dumps({**UPGRADE, "apply_method": "ssa"}), "spire").client_side


def test_set_pairs_are_typed_as_helm_types_them_and_compared_with_the_releases_values():
    from meshid.helm import covers, set_values

    wanted = set_values(["kuma.controlPlane.envVars.KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED=true",
                         "global.spire.trustDomain=prod.example.org", "global.spire.tools.kubectl.tag=v1.31.11",
                         "kuma.controlPlane.replicas=2"])
    assert wanted["kuma"]["controlPlane"] == {"envVars": {"KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED": True},
                                              "replicas": 2}
    current = {"global": {"spire": {"trustDomain": "prod.example.org", "tools": {"kubectl": {"tag": "v1.31.11"}}},
                          "extra": 1},
               "kuma": {"controlPlane": {"envVars": {"KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED": True},
                                         "replicas": 2, "resources": {}}}}
    assert covers(current, wanted), "the operator's other values do not matter"
    current["global"]["spire"]["trustDomain"] = "other.org"
    assert not covers(current, wanted) and not covers({}, wanted) and covers({}, {})
