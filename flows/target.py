"""One target x trust domain of a fleet, wherever it runs: the `fleet-target` flow, a subflow of the fleet's own
process (dispatch local) or a run of the `fleet-target` deployment on a Prefect worker (dispatch workers).

Everything that needs the cluster or its kubeconfig happens here, on the machine that runs the target: the
kubeconfig is read (file or Secret block), the cluster's lock is named after the API server it points at
(`meshid.fleet.clusters.lock_name`) and held (a strict global concurrency limit of 1, created when missing), the target's
unfinished earlier runs on this machine are recovered first when the fleet asks (the deployed validation), then the
guide runs (rolled back where a rollout fails), or the plan.

Run as a deployment, its caller is elsewhere, so the result travels through the Prefect API: a JSON artifact
`fleet-target-result` of this flow run, written before the run ends (`flows.dispatch` reads it back).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

import httpx
from prefect import flow, get_run_logger
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run
from prefect.states import Cancelled, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.cleanup_hooks import finish_cleanup
from flows.guide import end_state, kubeconfig_from_block, resolve, run_guide, run_report, start_run, submit
from meshid import interrupt, recovery
from meshid.fleet.clusters import lock_name
from meshid.fleet.results import LOCAL_WORKER, TargetResult
from meshid.fleet.spec import FleetMode
from meshid.models import GuideParams
from meshid.results import Outcome, RunReport
from meshid.runrecord import Cleanup
from meshid.settings import load_settings
from meshid.stages.registry import PLAN
from meshid.stages.run_context import RunContext
from tasks import artifact_sink
from tasks.stage import publish_run

RESULT_KEY = "fleet-target-result"
LOCK_POLL_S = 2.0
_ACQUIRING = threading.Lock()  # one slot acquisition at a time in this process (see cluster_lock)


def _acquire(name: str, lease_s: float):  # noqa: ANN202 - prefect's context manager
    """The cluster's one slot, its lease renewed in the background. A renewal that fails (the server gone longer
    than about a quarter of the lease) is logged and the run goes on: stopping a run in the middle of a helm
    upgrade would leave the cluster half-configured."""
    return concurrency(name, occupy=1, strict=True, max_retries=0, lease_duration=lease_s,
                       raise_on_lease_renewal_failure=False)


def _create_lock(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass  # another run created it meanwhile


@contextmanager
def cluster_lock(name: str, timeout_s: float, lease_s: float) -> Iterator[None]:
    """Hold the one slot of the cluster's strict global concurrency limit `name` (created when missing), on a lease
    of `lease_s`; TimeoutError after `timeout_s`, `interrupt.Interrupted` when the run is stopped while it waits.

    While another run holds the cluster, the acquisition is retried here every LOCK_POLL_S. Acquisitions from this
    process go one at a time: on a SQLite-backed server, acquisitions racing other writes fail with 503 ("database
    is locked") and the client backs off exponentially (2, 4, 8 ... s), so they should at least not race each other.
    """
    deadline = time.monotonic() + timeout_s
    with ExitStack() as held:
        while True:
            with _ACQUIRING:
                try:
                    held.enter_context(_acquire(name, lease_s))
                    break
                except ConcurrencySlotAcquisitionError as exc:
                    cause = exc.__cause__
                    if cause is None:  # strict, and the limit does not exist (prefect/concurrency/_asyncio.py)
                        _create_lock(name)
                        continue
                    if not (isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423):
                        raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"cluster lock {name} still held by another run after {timeout_s:g} s")
            interrupt.wait(LOCK_POLL_S)
        yield


def _target_report(ctx: RunContext, mode: FleetMode) -> RunReport:
    """The plan stage alone, or the guide."""
    if mode is FleetMode.PLAN:
        started = datetime.now(UTC)
        stage = resolve(PLAN.name, submit(PLAN.name, ctx, None))
        report = run_report(ctx, [stage], started)
        publish_run(ctx, [stage])
        recovery.finish(ctx.ledger, Cleanup.DONE, "run", "nothing to clean up: a plan changes nothing")
        return report
    return run_guide(ctx)  # a rollout that fails is rolled back there


def _recover_earlier_runs(target: str) -> None:
    """Clean up what earlier runs of this target on this machine left (a crash, a SIGKILL), under its lock."""
    settings = load_settings()
    logger = get_run_logger()
    for done in recovery.recover_targets(settings.runs_dir, settings, {target}, by=f"flow run {flow_run.id}"):
        for line in done.lines(settings.runs_dir):
            (logger.warning if done.problems else logger.info)("recovered before the run: %s", line)


def worker_name() -> str:
    """The Prefect worker that started this process (it sets PREFECT__WORKER_NAME), else `local`."""
    return os.environ.get("PREFECT__WORKER_NAME") or LOCAL_WORKER


def _hand_over(result: TargetResult) -> None:
    """Run as a deployment (its fleet is elsewhere): store the result as this flow run's `fleet-target-result`."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return  # a subflow: the fleet reads the returned state
    data = {"result": result.to_json_dict(),
            "report": result.report.model_dump(mode="json") if result.report is not None else None}
    Artifact(type="json", key=RESULT_KEY, data=data,
             description=f"{result.key}: {result.outcome.value}, read by the fleet that started this run").create()


@flow(name="fleet-target", flow_run_name="{mode}-{params.target.name}-{params.trust_domain}",
      task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True,
      on_cancellation=[finish_cleanup], on_crashed=[finish_cleanup])
def fleet_target(params: GuideParams, mode: FleetMode, wave: int | None = None, lock_timeout_s: float = 3600.0,
                 lock_lease_s: float = 300.0, recover_first: bool = False) -> State:
    """One target x trust domain of a fleet: the guide (rolled back where a rollout fails), or the plan, holding the
    cluster's lock.

    Args:
        params: the run's guide parameters.
        mode: validate, rollout or plan.
        wave: the rollout wave (0 is the canary).
        lock_timeout_s: how long to wait for the cluster's lock.
        lock_lease_s: the lease of the cluster's lock (how long it outlives a holder that died).
        recover_first: first clean up what earlier runs of this target on this machine left.
    """
    where = f"{params.target.name} ({params.trust_domain}), {mode.value}"
    ids = {"wave": wave, "flow_run_id": str(flow_run.id), "worker": worker_name()}
    with interrupt.signals_handled(), ExitStack() as held:
        kubeconfig_text = kubeconfig_from_block(params)
        try:
            held.enter_context(cluster_lock(lock_name(params.target, kubeconfig_text), lock_timeout_s, lock_lease_s))
        except (TimeoutError, interrupt.Interrupted) as exc:
            stopped = isinstance(exc, interrupt.Interrupted)
            why = f"not started: the run was {exc} while it waited for its cluster's lock" if stopped else str(exc)
            result = TargetResult(target=params.target.name, trust_domain=params.trust_domain,
                                  outcome=Outcome.SKIPPED if stopped else Outcome.FAILED, reason=why, **ids)
            _hand_over(result)
            return (Cancelled if stopped else Failed)(message=f"{where}: {why}", data=result)
        if recover_first:
            _recover_earlier_runs(params.target.name)
        ctx = start_run(params, kubeconfig_text)
        with artifact_sink.publishing():
            report = _target_report(ctx, mode)
        result = TargetResult.from_report(report, run_url=flow_run.ui_url, **ids)
        _hand_over(result)
        return end_state(report, ctx, where, result)
