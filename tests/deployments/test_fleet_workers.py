"""Fleets with dispatch workers on the stack: every target x trust domain a `fleet-target` deployment run on the worker
of its queue; a rollout with approval whose second wave fails and is rolled back while the canary stays; a worker
killed with SIGKILL in the middle of a target; a Prefect server restart in the middle of a fleet.

The fleet's parent is `meshid fleet` in a process of its own, with its own runs dir: it shares nothing with the
workers but the Prefect API.
"""

from __future__ import annotations

import contextvars
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId

from deployments import stack
from deployments.setup import ZOMBIE_AFTER
from flows.dispatch import never_started
from flows.fleet import FLEET_LIMIT
from meshid.fleet.clusters import lock_name
from meshid.fleet.spec import parse_fleet
from meshid.ledger import FILE, Ledger
from meshid.runrecord import RunState
from sandbox import lifecycle
from tests.deployments.conftest import BIN, PROJECT
from tests.waiting import wait_for
from tests.fleet_checks import GUIDE_NAMESPACES, approve_when_paused, present

TD, OTHER_TD = "default.default.mesh.local", "prod.example.org"
DEFAULT, EU = "meshid-default", "meshid-eu"
LEASE_S = 60  # the shortest lease Prefect accepts (prefect/server/api/concurrency_limits_v2.py: ge=60)
REPOSSESSOR_S = 15  # how often the server frees expired leases (prefect/settings/models/server/services.py)
PROACTIVE_S = 5  # how often the server evaluates proactive triggers (prefect/settings/models/server/events.py)


@pytest.fixture(scope="module")
def clusters():
    """Two sandboxes for the rollout and the SIGKILL, reached by the workers through kubeconfig files."""
    infos = []
    try:
        for name in ("wk-a", "wk-b"):
            infos.append(lifecycle.up(f"{name}-{uuid.uuid4().hex[:4]}", tick_s=0.5))
        yield infos
    finally:
        for info in infos:
            lifecycle.down(info.name)


def _fleet(prefect_server, tmp_path: Path, **spec) -> subprocess.Popen:
    """`meshid fleet` on a fleet file of `spec`, in its own process; its JSON report goes to tmp_path/fleet.json."""
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump({"dispatch": "workers", **spec}))
    out = (tmp_path / "fleet.out").open("w")
    return subprocess.Popen([str(BIN / "meshid"), "fleet", "--fleet-file", str(fleet_file), "--json-report",
                             str(tmp_path / "fleet.json"), "--junit", str(tmp_path / "fleet.xml")],
                            cwd=PROJECT, env=prefect_server.env, stdout=out, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, tmp_path: Path, timeout_s: float = 900) -> tuple[int, dict]:
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the fleet did not end within {timeout_s} s:\n{(tmp_path / 'fleet.out').read_text()[-4000:]}")
    report = tmp_path / "fleet.json"
    assert report.exists(), (tmp_path / "fleet.out").read_text()[-4000:]
    return code, json.loads(report.read_text())


def _by_key(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["target"], r["trust_domain"]): r for r in report["results"]}


def _target_runs(client) -> list:
    """Every fleet-target flow run."""
    return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["fleet-target"])), limit=200)


def _ledgers(runs_dir: Path) -> list[Ledger]:
    return [ledger for ledger in map(Ledger.load, runs_dir.glob(f"*/{FILE}")) if ledger.run]


def _context(name: str, info, **extra) -> dict:
    return {"name": name, "provider": "context", "kubeconfig": str(info.kubeconfig), **extra}


def _running_task(client, flow_run_id, stage: str) -> bool:
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return any(r.name.startswith(f"{stage}-") and r.state and r.state.is_running() for r in runs)


def test_a_fleet_on_workers_runs_each_target_on_the_worker_of_its_queue(deployed, prefect_server, tmp_path):
    names = [f"wf-{uuid.uuid4().hex[:4]}-{x}" for x in "ab"]
    code, report = _finish(_fleet(prefect_server, tmp_path, mode="validate", concurrency=2,
                                  trust_domains=[TD, OTHER_TD], targets=[
                                      {"name": names[0], "provider": "sandbox"},
                                      {"name": names[1], "provider": "sandbox", "work_queue": "eu"}]), tmp_path)
    assert code == 0 and report["outcome"] == "passed", (tmp_path / "fleet.out").read_text()[-4000:]
    results = _by_key(report)
    assert {key: (r["outcome"], r["worker"]) for key, r in results.items()} == {
        (names[0], TD): ("passed", DEFAULT), (names[0], OTHER_TD): ("passed", DEFAULT),
        (names[1], TD): ("passed", EU), (names[1], OTHER_TD): ("passed", EU)}
    out = (tmp_path / "fleet.out").read_text()
    assert "WORKER" in out and EU in out
    with get_client(sync_client=True) as client:
        children = {str(r.id): r for r in _target_runs(client)}
        for (name, td), result in results.items():
            child = children[result["flow_run_id"]]  # the result names the deployment run that produced it
            assert child.deployment_id == deployed["fleet-target/fleet-target"].id
            assert child.labels["prefect.worker.name"] == result["worker"] and child.state.is_completed()
            assert child.work_queue_name == ("eu" if name == names[1] else "default")
            assert [s["name"] for s in result["stages"]][-1] == "cleanup"
    # nothing shared but the API: the ledgers are on the workers, the parent keeps only the fleet's own reports
    parent_runs = Path(prefect_server.env["MESHID_RUNS_DIR"])
    assert sorted(p.name for p in parent_runs.iterdir()) == [report["fleet_run_id"]]
    for worker, name in ((DEFAULT, names[0]), (EU, names[1])):
        mine = [ledger.run for ledger in _ledgers(prefect_server.worker_runs(worker)) if ledger.run.target in names]
        assert sorted((run.target, run.trust_domain, run.state()) for run in mine) == [
            (name, TD, RunState.PASSED), (name, OTHER_TD, RunState.PASSED)]


def test_an_unknown_work_queue_is_bad_input_before_anything_runs(deployed, prefect_server, tmp_path):
    proc = _fleet(prefect_server, tmp_path, trust_domains=[TD], targets=[
        {"name": "q-a", "provider": "sandbox"}, {"name": "q-b", "provider": "sandbox", "work_queue": "us"}])
    assert proc.wait(timeout=300) == 2
    out = (tmp_path / "fleet.out").read_text()
    assert "meshid: targets[1].work_queue: work pool meshid has no queue 'us' (it has: default, eu)" in out, out
    assert "Fix: start a worker on it (prefect worker start -p meshid -q us)" in out
    with get_client(sync_client=True) as client:
        assert not [r for r in _target_runs(client) if r.parameters["params"]["target"]["name"].startswith("q-")]


def test_a_rollout_on_workers_keeps_its_canary_and_rolls_back_the_failing_wave(deployed, prefect_server, clusters,
                                                                               tmp_path):
    a, b = clusters
    # wave 1's cluster hands out SVIDs of another trust domain: its calls stay denied after the permission
    lifecycle.set_faults(b.name, svid_trust_domain="other.example.org")
    stop = threading.Event()
    # the thread runs in this context: the stack's API URL is a temporary setting (a context variable) of this test
    approver = threading.Thread(target=contextvars.copy_context().run,
                                args=(approve_when_paused, "canary looks fine", stop), daemon=True)
    approver.start()
    try:
        code, report = _finish(_fleet(prefect_server, tmp_path, mode="rollout", trust_domains=[TD], approval=True,
                                      approval_timeout_s=600, targets=[
                                          _context("canary", a, labels={"wave": "canary"}),
                                          _context("later", b, work_queue="eu")],
                                      guide={"charts": {"mirror": a.chart_repo_url},
                                             "timeouts": {"connectivity_s": 20}}), tmp_path)
    finally:
        stop.set()
        approver.join(10)
        lifecycle.set_faults(b.name, svid_trust_domain="")
    assert code == 1 and report["outcome"] == "failed", (tmp_path / "fleet.out").read_text()[-4000:]
    canary, later = report["results"]
    assert (canary["target"], canary["outcome"], canary["wave"], canary["worker"]) == ("canary", "passed", 0, DEFAULT)
    assert (later["target"], later["outcome"], later["wave"], later["worker"]) == ("later", "failed", 1, EU)
    assert later["failed_stage"] == "connectivity-after-permission" and later["rolled_back"] is True
    assert later["stages"][-1]["name"] == "rollback" and later["stages"][-1]["outcome"] == "passed"
    assert [(c["code"], c["outcome"]) for c in report["checks"]] == [("MID080", "passed"), ("MID080", "failed")]
    assert set(GUIDE_NAMESPACES) <= set(present(a))  # the canary keeps its changes
    assert present(b) == []  # the failing wave was rolled back


def _lock(client, name: str):
    return client.read_global_concurrency_limit_by_name(name)


def _diagnosis(client, prefect_server, tmp_path: Path) -> Callable[[], str]:
    """What a wait on a fleet saw last: the fleet-wide slots, every target run's state, the fleet's and the workers'
    output (a target that never starts is held back by one of them)."""
    def seen() -> str:
        runs = [f"{r.name}: {r.state_name} ({r.state.message if r.state else ''})" for r in _target_runs(client)]
        return (f"fleet-wide slots: {_lock(client, FLEET_LIMIT)}\ntarget runs: {runs}\n"
                f"fleet: {(tmp_path / 'fleet.out').read_text()[-3000:]}\n{prefect_server.logs()}")
    return seen


@pytest.fixture
def fresh_cluster():
    """A sandbox of this test's own: what the killed run leaves on it is the test's subject."""
    info = lifecycle.up(f"wk-k-{uuid.uuid4().hex[:4]}", tick_s=0.5)
    try:
        yield info
    finally:
        lifecycle.down(info.name)


def test_a_worker_killed_mid_target_crashes_its_run_the_fleet_reports_it_and_the_lock_frees(
        deployed, prefect_server, fresh_cluster, tmp_path):
    b = fresh_cluster
    name = f"wk-{uuid.uuid4().hex[:4]}"
    proc = _fleet(prefect_server, tmp_path, mode="validate", concurrency=2, trust_domains=[TD],
                  lock_lease_s=LEASE_S, guide={"charts": {"mirror": b.chart_repo_url}},
                  targets=[{"name": f"{name}-ok", "provider": "sandbox"}, _context(name, b, work_queue="eu")])
    try:
        with get_client(sync_client=True) as client:
            logs = _diagnosis(client, prefect_server, tmp_path)
            child = wait_for("the eu target's run", lambda: next(
                (r for r in _target_runs(client) if r.name == f"validate-{name}-{TD}"), None), 300, logs)
            # seen on the cluster itself: task-run states reach the API through the server's event pipeline, which
            # may show a short stage only once it is over
            wait_for("the eu target's first change on the cluster", lambda: present(b) != [], 300, logs)
            lock = lock_name(parse_fleet({"trust_domains": [TD], "targets": [_context(name, b)]}).targets[0])
            assert _lock(client, lock).active_slots == 1
            killed = stack.stop_worker(prefect_server.stack, EU, kill=True)  # the worker's machine is lost
            killed_at = time.monotonic()
            assert len(killed) >= 2, "the worker and the flow run it started"
            crashed = wait_for("the killed run to be marked Crashed", lambda: (
                r := client.read_flow_run(child.id)).state.is_crashed() and r,
                ZOMBIE_AFTER.total_seconds() + stack.HEARTBEAT_S + PROACTIVE_S + 60, logs)
            to_crashed = time.monotonic() - killed_at
            wait_for("the cluster's lock to be free", lambda: _lock(client, lock).active_slots == 0,
                     LEASE_S + REPOSSESSOR_S + 60, logs)
            to_free = time.monotonic() - killed_at
        code, report = _finish(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        prefect_server.stack_command("up")  # the worker back, for the tests after this one
    print(f"SIGKILL to Crashed: {to_crashed:.1f} s; to the lock free: {to_free:.1f} s")
    assert "no heartbeat" in crashed.state.message
    assert code == 1 and report["outcome"] == "failed"
    results = _by_key(report)
    assert results[(f"{name}-ok", TD)]["outcome"] == "passed"
    lost = results[(name, TD)]
    assert (lost["outcome"], lost["codes"], lost["infrastructure"]) == ("failed", ["MID082"], True)
    assert (lost["flow_run_id"], lost["worker"]) == (str(child.id), EU) and "Crashed" in lost["reason"]
    # recovery on the worker's machine undoes what the killed run applied, as for any interrupted run
    runs_dir = prefect_server.worker_runs(EU)
    [killed_run] = [ledger.run for ledger in _ledgers(runs_dir) if ledger.run.target == name]
    assert killed_run.state() is RunState.UNRECOVERED and present(b) != []
    recovered = prefect_server.run("meshid", "recover", "--runs-dir", str(runs_dir))
    assert f"run {killed_run.run_id} ({name}, context" in recovered.stdout, recovered.stdout
    assert present(b) == []
    assert Ledger.load(runs_dir / killed_run.run_id / FILE).run.state() is RunState.RECOVERED


def test_a_server_restart_mid_fleet_is_ridden_out_and_nothing_runs_twice(deployed, prefect_server, tmp_path):
    names = [f"wr-{uuid.uuid4().hex[:4]}-{x}" for x in "ab"]
    proc = _fleet(prefect_server, tmp_path, mode="validate", concurrency=2, trust_domains=[TD, OTHER_TD],
                  targets=[{"name": names[0], "provider": "sandbox"},
                           {"name": names[1], "provider": "sandbox", "work_queue": "eu"}])
    try:
        with get_client(sync_client=True) as client:
            logs = _diagnosis(client, prefect_server, tmp_path)
            first = wait_for("the first target's run", lambda: next(
                (r for r in _target_runs(client) if r.name == f"validate-{names[0]}-{TD}"), None), 300, logs)
            wait_for("it to install Kong Mesh", lambda: _running_task(client, first.id, "install-kong-mesh"), 300,
                     logs)
        stopped_at = time.monotonic()
        stack.stop_server(prefect_server.stack)
        stack.start_server(prefect_server.stack)  # the API answers again
        outage = time.monotonic() - stopped_at
        code, report = _finish(proc, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"API down for {outage:.1f} s")
    assert outage >= 5, "no real outage"
    assert code == 0 and report["outcome"] == "passed", (tmp_path / "fleet.out").read_text()[-4000:]
    with get_client(sync_client=True) as client:
        runs = [r for r in _target_runs(client) if r.parameters["params"]["target"]["name"] in names]
    # a run process started while the API was away dies before it begins; the fleet creates that job's run again
    mine = [r for r in runs if not never_started(r)]
    assert sorted(r.name for r in mine) == sorted(f"validate-{n}-{td}" for n in names for td in (TD, OTHER_TD))
    assert all(r.state.is_completed() for r in mine)
    for worker, name in ((DEFAULT, names[0]), (EU, names[1])):  # each job ran once: one run, one ledger
        runs = [ledger.run for ledger in _ledgers(prefect_server.worker_runs(worker)) if ledger.run.target == name]
        assert sorted(run.trust_domain for run in runs) == sorted([TD, OTHER_TD])
