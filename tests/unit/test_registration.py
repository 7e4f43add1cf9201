"""Which ClusterSPIFFEID issues the demo's IDs, whether SPIRE reconciled it, and which demo pods have entries."""

from __future__ import annotations

from meshid.models import parse_params
from meshid.registration import entries_seen, ignored_guide_cr, issuing, reconciled, unregistered
from meshid.spire import Entry

PARAMS = parse_params({})
DEMO_ID = "spiffe://default.default.mesh.local/ns/kong-mesh-demo/sa/default"


def _cr(name: str, stats: dict | None = None, **spec) -> dict:
    return {"metadata": {"name": name}, "spec": spec, "status": {"stats": stats} if stats is not None else {}}


def _pod(name: str, uid: str) -> dict:
    return {"metadata": {"name": name, "uid": uid}}


def test_the_fallback_issues_the_ids_while_the_guides_cr_has_no_class():
    guide = _cr("spire-registration", {})
    fallback = _cr("spire-spire-default", {"podsSelected": 4}, className="spire-spire", fallback=True)
    assert issuing([guide, fallback], PARAMS) is fallback
    assert "ignores it" in ignored_guide_cr([guide, fallback], PARAMS)
    with_class = _cr("spire-registration", {"podsSelected": 2}, className="spire-spire")
    assert issuing([with_class, fallback], PARAMS) is with_class


def test_reconciled_does_not_fail_on_render_failures_of_pods_elsewhere():
    # spire-controller-manager counts a pod not yet on a node as podEntryRenderFailures ("node ... not found in
    # cache") in every CR that selects it: the fallback selects every namespace, so a pending pod anywhere shows here.
    fallback = _cr("spire-spire-default", {"podsSelected": 5, "podEntryRenderFailures": 1}, className="spire-spire",
                   fallback=True)
    ok, seen = reconciled([fallback], PARAMS)
    assert ok and "podEntryRenderFailures" in seen
    assert not reconciled([_cr("spire-spire-default", {}, className="spire-spire", fallback=True)], PARAMS)[0]
    assert not reconciled([], PARAMS)[0]


def test_each_demo_pod_needs_an_entry_for_its_own_uid_and_the_expected_id():
    entries = [Entry(DEMO_ID, "spiffe://x/agent", frozenset({"k8s:pod-uid:u1"})),
               Entry("spiffe://default.default.mesh.local/ns/other/sa/default", "spiffe://x/agent",
                     frozenset({"k8s:pod-uid:u2"}))]
    pods = [_pod("demo-app-1", "u1"), _pod("kv-1", "u2")]
    assert unregistered(entries, pods, DEMO_ID) == ["kv-1"], "kv's entry issues another ID"
    ok, seen = entries_seen(entries, pods, DEMO_ID)
    assert not ok and "kv-1" in seen and DEMO_ID in seen
    assert entries_seen(entries, [pods[0]], DEMO_ID)[0]
    assert not entries_seen(entries, [], DEMO_ID)[0], "no pods proves nothing"
