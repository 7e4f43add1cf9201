"""A rollout on a production-like cluster: it never denies traffic that was allowed (counted by the world's data plane),
says beforehand what it affects and halts on what it does not cover, proves enforcement with the negative probe, and
converges: a second rollout changes nothing, and one after a permission was deleted by hand puts it back.

The harm a rollout must avoid comes from Kong Mesh 2.12 itself (see ../shared/reference/kong-mesh-spire.md): a
`rules` MeshTrafficPermission makes an inbound ignore its legacy `from` ones, and an identity-bearing proxy is not
matched by the tag principals of `from` entries, so `from`-allowed traffic stops once identity switches.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from flows.fleet import fleet
from meshid.errors import ExternalCallError
from meshid.fleet.spec import parse_fleet
from meshid.kube import Cluster
from meshid.manifests import DEMO_IMAGE
from meshid.probes import counter_probe
from meshid.settings import load_settings
from sandbox import lifecycle
from tests.conftest import require_private_netns

pytestmark = pytest.mark.prefect
TD = "default.default.mesh.local"


@pytest.fixture
def cluster_info():
    """A fresh sandbox for one test (a rollout's state is the test's subject)."""
    require_private_netns()
    info = lifecycle.up(f"rollout-{uuid.uuid4().hex[:4]}", tick_s=0.5)
    try:
        yield info
    finally:
        lifecycle.down(info.name)


class Traffic(threading.Thread):
    """Calls a counter service's `POST /api/counter` through port-forwards, every 0.2 s, until stopped (pods
    that are not there yet or go away are waited for): the traffic a rollout must never deny. `at_first_answer`: the
    world's traffic counts when the service first answered 200 (from then on its traffic was allowed)."""

    def __init__(self, info, namespace: str, service: str) -> None:  # noqa: ANN001 - a lifecycle.SandboxInfo
        super().__init__(daemon=True)
        self.info, self.cluster = info, Cluster(info.kubeconfig)
        self.namespace, self.service = namespace, service
        self.stop, self.statuses, self.at_first_answer = threading.Event(), [], None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with counter_probe(self.cluster, self.namespace, self.service, timeout_s=5) as probe:
                    while not self.stop.wait(0.2):
                        self.statuses.append(probe.call().status)
                        if self.at_first_answer is None and self.statuses[-1] == 200:
                            self.at_first_answer = lifecycle.traffic(self.info.name)
            except ExternalCallError:
                self.stop.wait(0.2)


def _rollout(info, tmp_path: Path, **spec) -> dict:
    report = tmp_path / f"rollout-{uuid.uuid4().hex[:6]}.json"
    data = {"mode": "rollout", "trust_domains": [TD],
            "targets": [{"name": "prod", "provider": "context", "kubeconfig": str(info.kubeconfig)}],
            "guide": {"charts": {"mirror": info.chart_repo_url}}}
    fleet(spec=parse_fleet({**data, **spec}), json_report=str(report), return_state=True)
    return json.loads(report.read_text())


def _plan(info, tmp_path: Path, **spec) -> dict:
    return _rollout(info, tmp_path, mode="plan", **spec)


def _result(report: dict) -> dict:
    (result,) = report["results"]
    return result


def _denied(info, client: str, server: str, since: list[dict] | None = None) -> int:
    """Denials of client -> server so far (since the counts `since`, if given)."""
    def count(traffic: list[dict]) -> int:
        return sum(t["denied"] for t in traffic if (t["client"], t["server"]) == (client, server))

    return count(lifecycle.traffic(info.name)) - count(since or [])


def _allowed(info, client: str, server: str) -> int:
    return sum(t["allowed"] for t in lifecycle.traffic(info.name) if (t["client"], t["server"]) == (client, server))


def _shop(cluster: Cluster) -> None:
    """An injected namespace `shop`: web calls db, which a legacy `from` MeshTrafficPermission lets web reach."""
    def app(name: str, env: list[dict]) -> list[dict]:
        return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
                 "spec": {"selector": {"app": name}, "ports": [{"port": 5050, "appProtocol": "http"}]}},
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                          "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                              {"name": "app", "image": DEMO_IMAGE, "env": env,
                               "ports": [{"containerPort": 5050, "name": "http"}]}]}}}}]

    cluster.apply({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "shop", "labels": {"kuma.io/sidecar-injection": "enabled"}}})
    for obj in [*app("db", []), *app("web", [{"name": "KV_URL", "value": "http://db.shop.svc.cluster.local:5050"}])]:
        cluster.apply(obj)
    cluster.apply({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshTrafficPermission",
                   "metadata": {"name": "db", "namespace": "shop", "labels": {"kuma.io/mesh": "default"}},
                   "spec": {"targetRef": {"kind": "Dataplane", "labels": {"app": "db"}},
                            "from": [{"targetRef": {"kind": "MeshSubset", "tags": {"app": "web"}},
                                      "default": {"action": "Allow"}}]}})
    for name in ("db", "web"):
        cluster.wait_rollout("shop", name, 60)


def _snapshot(cluster: Cluster) -> dict:
    """What a halted rollout must leave as it was: the mesh's objects, releases' secrets, namespaces."""
    kinds = [("kuma.io/v1alpha1", "MeshIdentity"), ("kuma.io/v1alpha1", "MeshTrafficPermission"),
             ("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID"), ("v1", "Namespace"), ("apps/v1", "Deployment")]
    found = {}
    for api, kind in kinds:
        objs, _ = cluster.list(api, kind)
        found[kind] = sorted((o["metadata"].get("namespace", ""), o["metadata"]["name"],
                              o["metadata"]["resourceVersion"]) for o in objs)
    secrets, _ = cluster.list("v1", "Secret", label_selector="owner=helm")
    found["releases"] = sorted(s["metadata"]["name"] for s in secrets)
    return found


def test_a_rollout_never_denies_demo_traffic_proves_enforcement_then_changes_nothing_and_converges_drift(
        cluster_info, tmp_path):
    cluster = Cluster(cluster_info.kubeconfig)
    traffic = Traffic(cluster_info, "kong-mesh-demo", "demo-app")
    traffic.start()
    try:
        first = _result(_rollout(cluster_info, tmp_path))
    finally:
        traffic.stop.set()
        traffic.join(10)
    assert first["outcome"] == "passed", first
    names = [s["name"] for s in first["stages"]]
    assert "connectivity-before-permission" not in names, "no denial of real traffic in a rollout"
    assert names.index("apply-permission") < names.index("apply-mesh-identity"), "permissions before identity"
    # the rollout deploys the demo itself, and its first calls may come before the permission: from the demo's
    # first answer on, its traffic was allowed, and none of it may be denied
    assert traffic.at_first_answer is not None, traffic.statuses
    assert _denied(cluster_info, "kong-mesh-demo/demo-app", "kong-mesh-demo/kv", traffic.at_first_answer) == 0
    assert _allowed(cluster_info, "kong-mesh-demo/demo-app", "kong-mesh-demo/kv") > 0
    assert _denied(cluster_info, "meshid-probe/meshid-probe", "kong-mesh-demo/kv") >= 3, "the probe was refused"
    served = traffic.statuses[traffic.statuses.index(200):]  # before that, the demo was still starting (no kv yet)
    assert 500 not in served and len(served) > 10, traffic.statuses
    assert cluster.get("v1", "Namespace", "meshid-probe") is None, "the probe is removed after its check"

    again = _result(_rollout(cluster_info, tmp_path))
    assert again["outcome"] == "unchanged", again

    # drift: until a rollout puts the permission back, the demo's calls are denied (the rollout's own probe's too,
    # while the re-applied permission reaches the proxies), so denials count again from the converged rollout's end
    cluster.delete("kuma.io/v1alpha1", "MeshTrafficPermission", "mtp", "kong-mesh-demo")
    converged = _result(_rollout(cluster_info, tmp_path))
    assert converged["outcome"] == "passed"
    assert cluster.get("kuma.io/v1alpha1", "MeshTrafficPermission", "mtp", "kong-mesh-demo") is not None
    since, allowed = lifecycle.traffic(cluster_info.name), _allowed(cluster_info, "kong-mesh-demo/demo-app",
                                                                   "kong-mesh-demo/kv")
    after = Traffic(cluster_info, "kong-mesh-demo", "demo-app")
    after.start()
    try:
        for _ in range(300):
            if len(after.statuses) >= 10 or after.stop.wait(0.2):
                break
    finally:
        after.stop.set()
        after.join(10)
    assert len(after.statuses) >= 10 and 500 not in after.statuses, after.statuses
    assert _denied(cluster_info, "kong-mesh-demo/demo-app", "kong-mesh-demo/kv", since) == 0
    assert _allowed(cluster_info, "kong-mesh-demo/demo-app", "kong-mesh-demo/kv") > allowed


def _run_report(result: dict) -> dict:
    """A fleet target's own run report (its stages' checks and tables), from the run's directory."""
    return json.loads((load_settings().runs_dir / result["run_id"] / "report.json").read_text())


def _check(report: dict, stage: str, code: str) -> dict:
    return next(c for s in report["stages"] if s["name"] == stage for c in s["checks"] if c["code"] == code)


def test_a_legacy_permission_of_another_namespace_is_planned_halts_the_rollout_untouched_and_translated_survives(
        cluster_info, tmp_path):
    cluster = Cluster(cluster_info.kubeconfig)
    canary = {"guide": {"charts": {"mirror": cluster_info.chart_repo_url}, "identity_selector": {"canary": "yes"}}}
    assert _result(_rollout(cluster_info, tmp_path, **canary))["outcome"] == "passed"  # Kong Mesh, the demo, SPIRE
    _shop(cluster)

    plan = _result(_plan(cluster_info, tmp_path))
    assert plan["outcome"] == "failed" and "MID091" in plan["codes"]
    impact = _run_report(plan)["stages"][0]["tables"]["impact"]
    assert {"impact": "from permission", "where": "shop/db"} in [{k: r[k] for k in ("impact", "where")}
                                                                 for r in impact]
    assert {r["where"] for r in impact if r["impact"] == "workload gets identity"} == {"shop/db", "shop/web"}

    before = _snapshot(cluster)
    halted = _result(_rollout(cluster_info, tmp_path))
    assert (halted["outcome"], halted["failed_stage"]) == ("failed", "preflight") and "MID091" in halted["codes"]
    mid091 = _check(_run_report(halted), "preflight", "MID091")
    assert "shop/db" in mid091["message"] and "accept_impact" in mid091["hint"]
    assert _snapshot(cluster) == before, "a halted rollout changes nothing"

    traffic = Traffic(cluster_info, "shop", "web")
    traffic.start()
    try:
        translated = _result(_rollout(cluster_info, tmp_path, accept_impact=True, translate_permissions=True))
    finally:
        traffic.stop.set()
        traffic.join(10)
    assert translated["outcome"] == "passed", translated
    assert cluster.get("kuma.io/v1alpha1", "MeshTrafficPermission", "db-identity", "shop") is not None
    assert _denied(cluster_info, "shop/web", "shop/db") == 0 and _allowed(cluster_info, "shop/web", "shop/db") > 0
