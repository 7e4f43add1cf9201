"""Cancelled through the Prefect API while the stack's process worker runs them: a guide run cleans up within the
worker's grace period (its logs say so), and a fleet run stops starting targets, its running child cleans up and
ends Cancelled, its finished child stays Completed. The deployed validation (the nightly) first recovers what an
earlier run of its own targets left (each target's run does, on the worker that holds its ledgers).

The process worker's cancellation sends SIGTERM to the run's process group, then SIGKILL once 30 s have passed
(prefect/runner/_cancellation_manager.py: `grace_seconds = 30.0`; _process_manager.py: `kill`).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey,
                                            FlowRunFilter, FlowRunFilterId, FlowRunFilterName, LogFilter,
                                            LogFilterFlowRunId)
from prefect.states import Cancelling

from meshid.ledger import FILE, CreatedCluster, Ledger
from meshid.runrecord import RunRecord, RunState, Writer
from sandbox import lifecycle, processes
from tests.waiting import wait_for

WORKER_GRACE_S = 30  # the process worker's SIGTERM-to-SIGKILL period (see the module docstring)
TD = "default.default.mesh.local"


WORKER = "meshid-default"  # the stack's worker of queue default, where these deployments' runs go


def _flow_run(client, flow_run_id):
    return client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))[0]


def _running_task(client, flow_run_id, stage: str) -> bool:
    """Whether the flow run has a task run of `stage` in state Running."""
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return any(r.name.startswith(f"{stage}-") and r.state and r.state.is_running() for r in runs)


def _child(client, name: str):
    found = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return found[0] if found else None


def _logs(client, flow_run_ids) -> str:
    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(flow_run_ids))))
    return "\n".join(entry.message for entry in logs)


def _logs_with(client, flow_run_ids, needle: str, context) -> str:
    """The runs' logs once they hold `needle` (at most 60 s later)."""
    def probe() -> str | None:
        text = _logs(client, flow_run_ids)
        return text if needle in text else None

    return wait_for(f"{needle!r} in the logs", probe, 60, context)


def _no_sandbox(name: str) -> None:
    assert name not in [info.name for info in lifecycle.status()]
    assert processes.using(lifecycle.root() / name) == []


def _cancel(client, flow_run_id) -> float:
    """Cancel as the UI does (state Cancelling); return when."""
    client.set_flow_run_state(flow_run_id, Cancelling(message="cancelled by the test"))
    return time.monotonic()


def test_a_cancelled_guide_run_cleans_up_within_the_workers_grace_period(deployed, prefect_server):
    target = f"cx-{uuid.uuid4().hex[:6]}"
    logs = prefect_server.logs
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployed["guide/guide-manual"].id, parameters={"params": {"target": {"name": target}}})
        wait_for("install-kong-mesh to run", lambda: _running_task(client, run.id, "install-kong-mesh"), 300, logs)
        cancelled_at = _cancel(client, run.id)
        final = wait_for("the run to end Cancelled", lambda: (r := _flow_run(client, run.id)).state.is_final()
                         and r, WORKER_GRACE_S + 30, logs)
        took = time.monotonic() - cancelled_at
        assert final.state.is_cancelled(), f"{final.state}\n{logs()}"
        print(f"cancel to Cancelled: {took:.1f} s")
        assert took < WORKER_GRACE_S, f"cancelled after {took:.1f} s: past the worker's grace period, so killed"
        # logs are shipped in batches, the hook's from the worker after the run's process ended
        text = _logs_with(client, [run.id], "nothing to do: cleaned up by run", logs)
    assert f"removed everything the run created (deleted cluster {target} (provider sandbox))" in text, text[-3000:]
    assert "cleanup after Cancelling:" in text and "nothing to do: cleaned up by run" in text, text[-3000:]
    assert "interrupted by SIGTERM at install-kong-mesh" in final.state.message
    _no_sandbox(target)


def _stale_run(runs_dir: Path, target: str) -> str:
    """What a nightly killed by SIGKILL leaves: its target's sandbox up, its ledger unfinished, its writer gone."""
    lifecycle.up(target, tick_s=0.5)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_id = f"stale-{target}"
    ledger = Ledger(path=runs_dir / run_id / FILE)
    ledger.record(CreatedCluster("sandbox", target))
    ledger.set_run(RunRecord(run_id=run_id, target=target, provider="sandbox", cluster=target, trust_domain=TD,
                             cleanup_policy="always", writer=Writer(pid=int(gone.stdout), start_ticks=1),
                             started_at=datetime.now(UTC)))
    return run_id


def test_a_cancelled_fleet_cancels_its_running_child_which_cleans_up_after_recovering_its_targets_first(
        deployed, prefect_server):
    names = [f"cf-{uuid.uuid4().hex[:4]}-{x}" for x in "abc"]
    runs_dir = prefect_server.worker_runs(WORKER)  # a local-dispatch fleet: its targets run where it runs
    stale = _stale_run(runs_dir, names[0])
    logs = prefect_server.logs
    spec = {"mode": "validate", "concurrency": 1, "trust_domains": [TD], "circuit_breaker": 3,
            "targets": [{"name": name, "provider": "sandbox"} for name in names]}
    children = [f"validate-{name}-{TD}" for name in names]
    with get_client(sync_client=True) as client:
        fleet = client.create_flow_run_from_deployment(deployed["fleet/nightly-validation"].id,
                                                       parameters={"spec": spec})
        second = wait_for("the second target's run", lambda: _child(client, children[1]), 300, logs)
        wait_for("the second target to install Kong Mesh",
                 lambda: _running_task(client, second.id, "install-kong-mesh"), 300, logs)
        _cancel(client, fleet.id)
        final = wait_for("the fleet to end", lambda: (r := _flow_run(client, fleet.id)).state.is_final() and r,
                         WORKER_GRACE_S + 30, logs)
        first, second, third = (_child(client, name) for name in children)
        assert final.state.is_cancelled(), f"{final.state}\n{logs()}"
        assert first.state.is_completed(), first.state
        assert second.state.is_cancelled() and "interrupted by SIGTERM" in second.state.message, second.state
        assert third is None, "no target starts once the fleet is cancelled"
        text = _logs_with(client, [fleet.id, first.id, second.id], "cleanup after Cancelling:", logs)
        assert not client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["fleet-report"]), flow_run_id=ArtifactFilterFlowRunId(any_=[fleet.id]))), \
            "an interrupted night does not count in the nightly trend"
    assert f"recovered before the run: run {stale} ({names[0]}, sandbox {names[0]}): deleted cluster" in text, text
    assert f"removed everything the run created (deleted cluster {names[1]}" in text, text[-3000:]
    for name in names:
        _no_sandbox(name)
    runs = [ledger.run for ledger in map(Ledger.load, runs_dir.glob(f"*/{FILE}"))
            if ledger.run and ledger.run.target in names]
    assert sorted((run.target, run.state()) for run in runs if run.run_id != stale) == sorted([
        (names[0], RunState.PASSED), (names[1], RunState.INTERRUPTED)])  # each name has its own random part
    assert next(run for run in runs if run.run_id == stale).state() is RunState.RECOVERED
