"""What an identity switch affects: data planes as Kuma sees them, legacy `from` permissions it breaks and their
`rules` equivalents, workloads beyond meshid's own (pure, over API objects)."""

from __future__ import annotations

from meshid.dataplanes import dataplanes, ref_selects
from meshid.impact import IdentityPlan, analyse

TD = "default.default.mesh.local"


def _pod(ns: str, name: str, labels: dict, socket: bool = True, owner: str | None = None, sa: str = "") -> dict:
    volumes = [{"name": "kuma-spire-agent-socket", "csi": {"driver": "csi.spiffe.io"}}] if socket else []
    meta = {"name": name, "namespace": ns, "labels": {**labels, "kuma.io/mesh": "default"}}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": f"{owner}-5d8f9c"}]
    spec = {"containers": [{"name": "kuma-sidecar"}, {"name": "app"}], "volumes": volumes}
    if sa:
        spec["serviceAccountName"] = sa
    return {"metadata": meta, "spec": spec}


def _svc(ns: str, name: str, selector: dict) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"selector": selector, "ports": [{"port": 5050}]}}


def _from_mtp(ns: str, name: str, target: dict, tags: dict, action: str = "Allow") -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kuma.io/mesh": "default"}},
            "spec": {"targetRef": target, "from": [{"targetRef": {"kind": "MeshSubset", "tags": tags},
                                                    "default": {"action": action}}]}}


PODS = [_pod("kong-mesh-demo", "demo-app-1", {"app": "demo-app", "version": "v1"}, owner="demo-app"),
        _pod("kong-mesh-demo", "kv-1", {"app": "kv"}, owner="kv"),
        _pod("shop", "web-1", {"app": "web"}, owner="web", sa="web"),
        _pod("shop", "db-1", {"app": "db"}, socket=False, owner="db"),
        {"metadata": {"name": "plain", "namespace": "shop", "labels": {}}, "spec": {"containers": [{"name": "x"}]}}]
SERVICES = [_svc("kong-mesh-demo", "demo-app", {"app": "demo-app"}), _svc("kong-mesh-demo", "kv", {"app": "kv"}),
            _svc("shop", "web", {"app": "web"}), _svc("shop", "db", {"app": "db"})]
PERMISSIONS = [
    _from_mtp("kong-mesh-demo", "kv", {"kind": "Dataplane", "labels": {"app": "kv"}},
              {"app": "demo-app", "k8s.kuma.io/namespace": "kong-mesh-demo"}),
    _from_mtp("shop", "db", {"kind": "Dataplane", "labels": {"app": "db"}}, {"app": "web"}),
    {"metadata": {"name": "mtp", "namespace": "kong-mesh-demo", "labels": {"kuma.io/mesh": "default"}},
     "spec": {"rules": [{"default": {"allow": [{"spiffeID": {"type": "Prefix", "value": f"spiffe://{TD}/ns/x"}}]}}]}},
]


def _plan(selector: dict) -> IdentityPlan:
    return IdentityPlan(selector, TD, lambda ns, sa: f"/ns/{ns}/sa/{sa}", frozenset({"kong-mesh-demo", "meshid-probe"}),
                        "kong-mesh-system")


def test_data_planes_are_the_injected_pods_with_kumas_labels_tags_and_legacy_ids():
    # kumahq/kuma 2.12.3: util.ServiceTag `<svc>_<ns>_svc_<port>`, tls.ServiceSpiffeID `spiffe://<mesh>/<service>`
    found = {dp.pod: dp for dp in dataplanes(PODS, SERVICES)}
    assert set(found) == {"demo-app-1", "kv-1", "web-1", "db-1"}
    kv = found["kv-1"]
    assert kv.workload == "kv" and kv.labels["k8s.kuma.io/namespace"] == "kong-mesh-demo"
    assert kv.legacy_ids() == ["spiffe://default/kv_kong-mesh-demo_svc_5050"]
    assert ref_selects({"kind": "MeshSubset", "tags": {"kuma.io/service": "kv_kong-mesh-demo_svc_5050"}}, kv)
    assert ref_selects({"kind": "MeshService", "name": "kv"}, kv) and not ref_selects({"kind": "MeshService",
                                                                                         "name": "db"}, kv)


def test_the_guides_selector_finds_the_from_permissions_it_breaks_and_the_workloads_beyond_meshids_own():
    impact = analyse(dataplanes(PODS, SERVICES), PERMISSIONS, _plan({}))
    by_name = {p.name: p for p in impact.from_permissions}
    assert set(by_name) == {"kv", "db"}, "the rules permission breaks nothing"
    assert by_name["kv"].own and not by_name["db"].own
    assert by_name["db"].servers == ("shop/db",)
    assert impact.workloads == ["shop/db", "shop/web"] and impact.restarts == ["shop/db"]
    assert impact.uncovered(translate=False, accept=False) == [
        "MeshTrafficPermission shop/db (from) on shop/db",
        "workload shop/db gets identity (traffic with unselected workloads stops)",
        "workload shop/web gets identity (traffic with unselected workloads stops)",
        "workload shop/db needs a restart to get the SPIRE socket"]
    assert impact.uncovered(translate=True, accept=True) == []
    assert [r["where"] for r in impact.rows()] == ["kong-mesh-demo/kv", "shop/db", "shop/db", "shop/web", "shop/db"]


def test_the_equivalent_allows_each_client_by_its_ids_before_and_after_the_switch():
    impact = analyse(dataplanes(PODS, SERVICES), PERMISSIONS, _plan({}))
    db = next(p for p in impact.from_permissions if p.name == "db").equivalent
    assert db["metadata"]["name"] == "db-identity" and db["metadata"]["annotations"] == {"meshid.io/equivalent-of":
                                                                                         "shop/db"}
    assert db["spec"]["targetRef"] == {"kind": "Dataplane", "labels": {"app": "db"}}
    assert db["spec"]["rules"] == [{"default": {"allow": [  # sorted
        {"spiffeID": {"type": "Exact", "value": f"spiffe://{TD}/ns/shop/sa/web"}},
        {"spiffeID": {"type": "Exact", "value": "spiffe://default/web_shop_svc_5050"}}]}}]


def test_a_narrow_selector_affects_only_what_it_selects():
    impact = analyse(dataplanes(PODS, SERVICES), PERMISSIONS, _plan({"k8s.kuma.io/namespace": "kong-mesh-demo"}))
    assert [p.name for p in impact.from_permissions] == ["kv"]
    assert impact.workloads == [] and impact.restarts == []
    assert impact.uncovered(translate=False, accept=False) == []
    kv = impact.from_permissions[0].equivalent  # meshid's own: legacy IDs only (the guide's permission does the rest)
    assert kv["spec"]["rules"][0]["default"]["allow"] == [
        {"spiffeID": {"type": "Exact", "value": "spiffe://default/demo-app_kong-mesh-demo_svc_5050"}}]


def test_from_entries_become_rules_most_specific_first():
    mtp = {"metadata": {"name": "m", "namespace": "shop", "labels": {"kuma.io/mesh": "default"}},
           "spec": {"targetRef": {"kind": "Mesh"}, "from": [
               {"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}},
               {"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Allow"}}]}}
    impact = analyse(dataplanes(PODS, SERVICES), [mtp], _plan({}))
    rules = impact.from_permissions[0].equivalent["spec"]["rules"]
    assert list(rules[0]["default"]) == ["allow"] and list(rules[1]["default"]) == ["deny"]
    assert rules[1]["default"]["deny"] == [{"spiffeID": {"type": "Prefix", "value": "spiffe://default"}},
                                           {"spiffeID": {"type": "Prefix", "value": f"spiffe://{TD}"}}]
