"""The fleet flow on sandboxes: validate with an unreachable target, the circuit breaker through the CLI, a rollout
whose canary fails (halted, rolled back), its resume with an approval, and a plan that changes nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowFilter, FlowFilterName

from flows.fleet import fleet
from cli.main import main
from meshid.fleet.clusters import lock_name
from meshid.fleet.spec import parse_fleet
from meshid.kube import Cluster
from meshid.ledger import FILE, Ledger
from meshid.settings import load_settings
from sandbox import lifecycle
from tests.conftest import require_private_netns
from tests.fleet_checks import GUIDE_NAMESPACES, approve_when_paused, present

pytestmark = pytest.mark.prefect

TD, OTHER_TD = "default.default.mesh.local", "prod.example.org"


@pytest.fixture(scope="module")
def clusters():
    """Two sandboxes, A and B, for the whole module."""
    require_private_netns()
    infos = []
    try:
        for name in ("fleet-a", "fleet-b"):
            infos.append(lifecycle.up(name, tick_s=0.5))
        yield infos
    finally:
        for info in infos:
            lifecycle.down(info.name)


def _target(name: str, info, **extra) -> dict:
    return {"name": name, "provider": "context", "kubeconfig": str(info.kubeconfig), **extra}


def _unreachable(tmp_path: Path, info, name: str) -> dict:
    """A target whose kubeconfig points at a closed port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = yaml.safe_load(info.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return {"name": name, "provider": "context", "kubeconfig": str(path)}


def _run(tmp_path: Path, **spec) -> tuple[object, dict, Path]:
    report, junit = tmp_path / "fleet.json", tmp_path / "fleet.xml"
    state = fleet(spec=parse_fleet(spec), json_report=str(report), junit_report=str(junit), return_state=True)
    return state, json.loads(report.read_text()), junit


def _by_key(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["target"], r["trust_domain"]): r for r in report["results"]}


def _artifact(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1)
    return found[0] if found else None


def _target_runs() -> list:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["fleet-target"])), limit=200)


def test_validate_fleet_with_an_unreachable_target_names_it_and_fails(clusters, tmp_path):
    a, b = clusters
    started = time.time()
    state, report, junit = _run(tmp_path, mode="validate", concurrency=3, trust_domains=[TD, OTHER_TD],
                                targets=[_target("a", a), _target("b", b), _unreachable(tmp_path, a, "u")],
                                guide={"charts": {"mirror": a.chart_repo_url}})
    assert state.is_failed() and report["outcome"] == "failed"
    results = _by_key(report)
    assert len(results) == 6
    failed = {k: (r["failed_stage"], r["infrastructure"]) for k, r in results.items() if r["outcome"] != "passed"}
    assert failed == {("u", TD): ("preflight", True), ("u", OTHER_TD): ("preflight", True)}
    assert "connection refused" in results[("u", TD)]["reason"].lower()
    for (target, td), r in results.items():
        assert set(r) >= {"target", "trust_domain", "outcome", "failed_stage", "duration_s", "run_url", "codes"}
        assert r["duration_s"] > 0 and "/flow-runs/flow-run/" in r["run_url"]
    assert [s["name"] for s in results[("a", OTHER_TD)]["stages"]][-1] == "cleanup"
    assert present(a) == [] and present(b) == []  # every guide run removed what it applied
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert len(suites) == 6 and sum(int(s.get("failures")) for s in suites) == 2
    summary = _artifact("fleet-validate-summary")
    assert summary is not None and len(json.loads(summary.data)) == 6
    # one run at a time per cluster: the two trust domains on one cluster never overlapped
    runs = [r for r in _target_runs() if r.start_time and r.start_time.timestamp() >= started - 1]
    for name in ("a", "b"):
        spans = sorted((r.start_time, r.end_time) for r in runs if r.parameters["params"]["target"]["name"] == name)
        assert len(spans) == 2 and spans[0][1] <= spans[1][0], spans
    with get_client(sync_client=True) as client:  # the lock each run took, named after its kubeconfig's server
        assert client.read_global_concurrency_limit_by_name(lock_name(parse_fleet(
            {"trust_domains": [TD], "targets": [_target("a", a)]}).targets[0])).limit == 1
    assert {r["worker"] for r in results.values()} == {"local"}
    assert all(r["flow_run_id"] in r["run_url"] for r in results.values() if r["run_url"])
    # each target's ledger names the fleet as its process's flow run, whose cancel and crash hooks recover it
    ids = {r["flow_run_id"] for r in results.values()}
    runs = [ledger.run for ledger in map(Ledger.load, load_settings().runs_dir.glob(f"*/{FILE}"))
            if ledger.run and ledger.run.flow_run_id in ids]
    assert len(runs) == 6 and {run.root_flow_run_id for run in runs} == {report["fleet_run_id"]}


def test_breaker_through_the_cli_stops_after_k_infrastructure_failures(clusters, tmp_path, capsys):
    a, _ = clusters
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump({
        "mode": "validate", "concurrency": 1, "circuit_breaker": 1, "trust_domains": [TD],
        "targets": [_unreachable(tmp_path, a, "down-1"), _unreachable(tmp_path, a, "down-2")]}))
    report_path = tmp_path / "report.json"
    code = main(["fleet", "--fleet-file", str(fleet_file), "--json-report", str(report_path)])
    assert code == 1
    first, second = json.loads(report_path.read_text())["results"]
    assert (first["outcome"], first["failed_stage"]) == ("failed", "preflight")
    assert second["outcome"] == "skipped"
    assert second["reason"].startswith("circuit breaker open after 1 infrastructure failures (down-1/")
    out = capsys.readouterr().out
    rows = {cells[0]: cells for cells in (line.split() for line in out.splitlines()) if cells[:1] in (["down-1"],
                                                                                                ["down-2"])}
    assert rows["down-1"][1:3] == [TD, "failed"] and rows["down-1"][4] == "preflight", out  # TARGET .. FAILED STAGE
    assert rows["down-2"][1:3] == [TD, "skipped"], out
    assert out.splitlines()[0].split() == ["TARGET", "TRUST", "DOMAIN", "OUTCOME", "SECONDS", "FAILED", "STAGE",
                                           "WORKER", "CODES"] and "fleet validate failed" in out
    events = _events({"meshid.target.failed", "meshid.target.skipped"})
    assert {e.event: e.resource.id for e in events} == {
        "meshid.target.failed": f"meshid.target.down-1.{TD}", "meshid.target.skipped": f"meshid.target.down-2.{TD}"}
    assert next(e for e in events if e.event == "meshid.target.failed").payload["failed_stage"] == "preflight"


def _events(names: set[str], wait_s: float = 30) -> list:
    """The events of these names for the targets down-1 and down-2 (the server stores events shortly after)."""
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(EventFilter(event=EventNameFilter(name=sorted(names))), limit=50)
            found = [e for e in page.events if ".down-" in e.resource.id]
            if {e.event for e in found} == names or time.monotonic() > deadline:
                return found
            time.sleep(1)


@pytest.fixture(scope="module")
def halted(clusters, tmp_path_factory):
    """A rollout whose canary (A) fails after its changes: A's SPIRE agents hand out SVIDs of another trust domain
    (the world's fault knob), so no certificate matches and the allowed calls never succeed."""
    a, b = clusters
    lifecycle.set_faults(a.name, svid_trust_domain="other.example.org")
    try:
        return _run(tmp_path_factory.mktemp("halted"), mode="rollout", trust_domains=[TD],
                    targets=[_target("a", a, labels={"wave": "canary"}), _target("b", b)],
                    guide={"charts": {"mirror": a.chart_repo_url}, "timeouts": {"connectivity_s": 6}})
    finally:
        lifecycle.set_faults(a.name, svid_trust_domain="")


def test_rollout_halts_when_the_canary_fails_and_rolls_the_canary_back(clusters, halted):
    a, b = clusters
    state, report, _ = halted
    assert state.is_failed() and report["outcome"] == "failed"
    canary, later = report["results"]
    assert (canary["target"], canary["outcome"], canary["failed_stage"]) == (
        "a", "failed", "connectivity-after-permission")
    assert "MID061" in canary["codes"] and canary["rolled_back"] is True and canary["wave"] == 0
    assert canary["stages"][-1]["name"] == "rollback" and canary["stages"][-1]["outcome"] == "passed"
    assert (later["target"], later["outcome"], later["wave"]) == ("b", "skipped", 1)
    assert later["reason"].startswith("rollout halted: canary: 1 of 1 failed (a)")
    assert [c["code"] for c in report["checks"]] == ["MID080"] and report["checks"][0]["outcome"] == "failed"
    assert present(a) == []  # the rollback removed namespaces and releases the run applied
    assert present(b) == []  # the later wave was never touched

    saved = json.loads((load_settings().runs_dir / report["fleet_run_id"] / "rollout.json").read_text())
    assert saved["halted"] and saved["completed"] == []


@pytest.fixture(scope="module")
def resumed(clusters, halted, tmp_path_factory):
    """The halted rollout resumed with A's SPIRE fixed, with an approval between the waves."""
    a, b = clusters
    stop = threading.Event()
    approver = threading.Thread(target=approve_when_paused, args=("canary is fine", stop), daemon=True)
    approver.start()
    try:
        return _run(tmp_path_factory.mktemp("resumed"), mode="rollout", trust_domains=[TD],
                    targets=[_target("a", a, labels={"wave": "canary"}), _target("b", b)],
                    resume_from=halted[1]["fleet_run_id"], approval=True, approval_timeout_s=300, bake_time_s=1,
                    guide={"charts": {"mirror": a.chart_repo_url}})
    finally:
        stop.set()
        approver.join(10)


def test_resumed_approved_rollout_leaves_every_cluster_configured(clusters, resumed):
    state, report, _ = resumed
    assert state.is_completed(), state.message
    assert [(r["target"], r["outcome"], r["wave"]) for r in report["results"]] == [("a", "passed", 0),
                                                                                   ("b", "passed", 1)]
    assert [c["outcome"] for c in report["checks"]] == ["passed", "passed"]
    for info in clusters:
        cluster = Cluster(info.kubeconfig)
        assert cluster.get("kuma.io/v1alpha1", "MeshIdentity", "identity-spire", "kong-mesh-system") is not None
        mtp = cluster.get("kuma.io/v1alpha1", "MeshTrafficPermission", "mtp", "kong-mesh-demo")
        assert mtp["spec"]["rules"][0]["default"]["allow"][0]["spiffeID"]["value"] == f"spiffe://{TD}/ns/kong-mesh-demo"
        assert set(GUIDE_NAMESPACES) <= set(present(info))


def _snapshot(info) -> dict[tuple[str, str | None, str], str]:
    """(kind, namespace, name) -> resourceVersion of every object of the kinds the guide applies."""
    cluster = Cluster(info.kubeconfig)
    kinds = [("v1", "Namespace"), ("v1", "Service"), ("apps/v1", "Deployment"), ("kuma.io/v1alpha1", "Mesh"),
             ("kuma.io/v1alpha1", "MeshTrafficPermission"), ("kuma.io/v1alpha1", "MeshIdentity"),
             ("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID"), ("v1", "Secret")]
    seen = {}
    for api_version, kind in kinds:
        try:
            items, _ = cluster.list(api_version, kind)
        except Exception:  # the kind's CRD is not installed on this cluster
            continue
        for item in items:
            meta = item["metadata"]
            seen[(kind, meta.get("namespace"), meta["name"])] = meta["resourceVersion"]
    return seen


def test_plan_changes_nothing_and_says_what_would_happen(clusters, resumed, tmp_path):
    a, _ = clusters
    fresh = lifecycle.up("fleet-c", tick_s=0.5)
    try:
        before = {info.name: _snapshot(info) for info in (a, fresh)}
        state, report, _ = _run(tmp_path, mode="plan", trust_domains=[TD],
                                targets=[_target("configured", a), _target("fresh", fresh)],
                                guide={"charts": {"mirror": a.chart_repo_url}})
        after = {info.name: _snapshot(info) for info in (a, fresh)}
    finally:
        lifecycle.down(fresh.name)
    assert state.is_completed(), state.message
    assert after == before  # no new objects, no resourceVersion changed
    assert [(r["target"], r["outcome"], r["failed_stage"]) for r in report["results"]] == [
        ("configured", "unchanged", None), ("fresh", "passed", None)]  # a rollout would change nothing on A
    plans = {}
    for name in ("configured", "fresh"):
        rows = json.loads(_artifact(f"{name}-{TD.replace('.', '-')}-touched").data)
        plans[name] = {(r["kind"], r["name"]): (r["action"], r["detail"]) for r in rows if r["stage"] == "plan"}
    assert plans["fresh"][("MeshIdentity", "identity-spire")] == (
        "pending", "would be created once the chart installs the CRD")
    assert plans["fresh"][("Namespace", "kong-mesh-demo")][0] == "would create"
    assert plans["fresh"][("Deployment", "kv")][0] == "pending"
    assert plans["fresh"][("HelmRelease", "kong-mesh")][0] == "would install"
    assert plans["configured"][("HelmRelease", "kong-mesh")][0] == "unchanged"  # at the pinned chart, same values
    assert {plans["configured"][("MeshIdentity", "identity-spire")][0],
            plans["configured"][("Deployment", "kv")][0]} <= {"unchanged", "would update"}


def test_cluster_lock_is_created_when_missing_waits_for_the_holder_and_times_out():
    from flows.target import cluster_lock

    name = f"meshid-cluster-lock-test-{time.monotonic_ns()}"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with cluster_lock(name, 10, 60):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).limit == 1  # created by the first holder
    with pytest.raises(TimeoutError, match="still held by another run"):
        with cluster_lock(name, 1, 60):
            pass
    release.set()
    started = time.monotonic()
    with cluster_lock(name, 10, 60):
        waited = time.monotonic() - started
    thread.join()
    assert waited < 5
