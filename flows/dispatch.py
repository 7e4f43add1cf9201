"""Where a fleet job runs, and its result back: the one difference between the two dispatch modes.

- local: the `fleet-target` flow as a subflow of the fleet's own process; its result is the returned state's data.
- workers: a `run_deployment` child of the `fleet-target` deployment, on the target's work queue, picked up by a
  Prefect worker; the fleet watches its state through the API (every child of the process in one read per
  WATCH_POLL_S, `flows.children`) and reads its result from the JSON artifact
  `fleet-target-result` the child writes (`flows.target`). The parent and the workers share nothing but the API.

The child is created with an idempotency key (fleet run + job), so a create the client retries after a lost answer
(a server restart) returns the same run and no cluster sees a job twice. While the fleet waits, an API that does not
answer is waited out for API_OUTAGE_S (the client retries each call first); a stop request cancels the child (the
worker sends it SIGTERM and it cleans up) and waits, bounded, for it to end. A child that ends without a result (its
worker died: Prefect's zombie detection marks it Crashed) is a failed, infrastructure result (MID082).

A child that crashed before it ever ran (no start time: its process died before the engine proposed Running, so the
target's flow, which alone touches the cluster, never began) is created again, up to NEVER_STARTED_RETRIES times. A
run process that starts while the API is away is such a child: Prefect's client fails a first connection at once
(prefect/client/base.py retries ConnectError only after a client has connected), and the worker marks it Crashed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.client.schemas.objects import FlowRun, WorkQueueStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from prefect.states import Cancelled, Cancelling

from flows.children import ChildReader
from flows.futures import value_or_why
from flows.target import RESULT_KEY, fleet_target
from meshid import interrupt
from meshid.errors import InputError
from meshid.fleet.results import LOCAL_WORKER, TargetResult
from meshid.fleet.scheduling import Job
from meshid.fleet.spec import Dispatch, FleetSpec
from meshid.results import Outcome, RunReport
from meshid.stages.runner import describe

DEPLOYMENT = "fleet-target/fleet-target"
WATCH_POLL_S = 2.0  # one read of the children's states, for every job of the process (`flows.children`)
API_OUTAGE_S = 180.0  # an API that answers no call for this long gives the job up
CANCEL_WAIT_S = 90.0  # a cancelled child: the worker's 30 s SIGTERM grace, its cleanup, the on_cancellation hook
PICKUP_TIMEOUT_S = 900.0  # a child no worker took by then is cancelled: its queue's workers are gone
HEALTH_TIMEOUT_S = 10.0
NEVER_STARTED_RETRIES = 2  # children that crashed before they ran, created again
WORKER_LABEL = "prefect.worker.name"  # the worker that took a run labels it so (prefect/workers/base.py)

T = TypeVar("T")
CHILDREN = ChildReader(WATCH_POLL_S)


def run_job(job: Job, spec: FleetSpec, fleet_run_id: str, recover_first: bool) -> TargetResult:
    """Run one job as the spec's dispatch says; always a result, never an exception for the job's own failures."""
    parameters = {"params": job.params, "mode": spec.mode, "wave": job.wave, "lock_timeout_s": spec.lock_timeout_s,
                  "lock_lease_s": spec.lock_lease_s, "recover_first": recover_first}
    if spec.dispatch is Dispatch.LOCAL:
        return _run_here(job, parameters)
    sent = {**parameters, "params": job.params.model_dump(mode="json"), "mode": spec.mode.value}
    return _run_on_worker(job, sent, f"{fleet_run_id}:{job.key}")


def _run_here(job: Job, parameters: dict[str, Any]) -> TargetResult:
    state = fleet_target(**parameters, return_state=True)
    value = value_or_why(state, TargetResult)
    if isinstance(value, TargetResult):
        return value
    return TargetResult.lost(job, f"its run ended {state.name} without a report: {value}",
                             str(state.state_details.flow_run_id), LOCAL_WORKER)


def _run_on_worker(job: Job, parameters: dict[str, Any], idempotency_key: str) -> TargetResult:
    key, again = idempotency_key, 0
    while True:
        result, final = _child(job, parameters, key)
        if final is None or not never_started(final) or again == NEVER_STARTED_RETRIES or interrupt.requested():
            return result
        again += 1
        key = f"{idempotency_key}:again-{again}"
        get_run_logger().warning("%s: its run %s crashed before it started (%s); creating it again (%d/%d)",
                                 job.key, final.name, final.state.message, again, NEVER_STARTED_RETRIES)


def never_started(run: FlowRun) -> bool:
    """A run that crashed without ever entering Running: the flow never began, so nothing touched its cluster."""
    return run.state is not None and run.state.is_crashed() and run.start_time is None


def _child(job: Job, parameters: dict[str, Any], idempotency_key: str) -> tuple[TargetResult, FlowRun | None]:
    """One child run of the job and its result, with the child as it ended (None when none was created)."""
    child = _through_outage(lambda: run_deployment(
        DEPLOYMENT, parameters=parameters, timeout=0, work_queue_name=job.target.work_queue,
        idempotency_key=idempotency_key))
    if child is None:
        if interrupt.requested():
            return TargetResult.not_run(job, Outcome.SKIPPED, f"not started: the fleet was "
                                                              f"{interrupt.Interrupted(interrupt.received())}"), None
        return TargetResult.lost(job, f"not started: the Prefect API did not answer for {API_OUTAGE_S:g} s", None,
                                 None), None
    with get_client(sync_client=True) as client:  # one client: it retries calls once it has connected
        final, gave_up = _watch(client, child)
        if gave_up is not None:
            return TargetResult.lost(job, f"its run {final.name} was {final.state.name} when the fleet gave up on it: "
                                          f"{gave_up}", str(child.id), final.labels.get(WORKER_LABEL),
                                     _ui_url(child.id)), None
        found = _through_outage(lambda: client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[RESULT_KEY]),
                                           flow_run_id=ArtifactFilterFlowRunId(any_=[child.id])), limit=1),
                               stoppable=False)
    worker = final.labels.get(WORKER_LABEL)
    if not found and final.state.is_cancelled() and final.start_time is None:
        return TargetResult.not_run(job, Outcome.SKIPPED, f"not started: {final.state.message}"), final
    if not found:
        return TargetResult.lost(job, f"its run {final.name} on worker {worker or '(none)'} ended {final.state.name} "
                                      f"without a report: {final.state.message}", str(child.id), worker,
                                 _ui_url(child.id)), final
    data = found[0].data
    data = json.loads(data) if isinstance(data, str) else data
    report = RunReport.model_validate(data["report"]) if data.get("report") else None
    return TargetResult.model_validate(data["result"]).model_copy(update={"report": report}), final


def _watch(client: SyncPrefectClient, child: FlowRun) -> tuple[FlowRun, str | None]:
    """The child once it is final, or as last seen with why the fleet gave up on it: the API stayed away for
    API_OUTAGE_S, no worker took it within PICKUP_TIMEOUT_S (then it is cancelled), or the fleet was stopped (then
    it is cancelled and waited for, CANCEL_WAIT_S at most)."""
    run, started, cancel_deadline = child, time.monotonic(), None
    while True:
        read = _through_outage(lambda: CHILDREN.read(client, child.id), stoppable=False)
        if read is None:
            return run, f"the Prefect API did not answer for {API_OUTAGE_S:g} s"
        run = read
        if run.state is not None and run.state.is_final():
            return run, None
        if cancel_deadline is None and (interrupt.requested() or (
                run.state is not None and run.state.is_scheduled() and time.monotonic() - started > PICKUP_TIMEOUT_S)):
            cancel_deadline = time.monotonic() + CANCEL_WAIT_S
            _cancel(client, run)
        elif cancel_deadline is not None and time.monotonic() >= cancel_deadline:
            return run, f"it was cancelled and had not ended {CANCEL_WAIT_S:g} s later"


def _cancel(client: SyncPrefectClient, run: FlowRun) -> None:
    """Cancel as the UI does: a run no worker has taken ends Cancelled now, a running one goes Cancelling (its
    worker sends SIGTERM, and the run stops and cleans up)."""
    if interrupt.requested():
        why = f"the fleet was {interrupt.Interrupted(interrupt.received())}"
    else:
        why = f"no worker on queue {run.work_queue_name} took it within {PICKUP_TIMEOUT_S:g} s"
    state = Cancelled(message=why) if run.state.is_scheduled() else Cancelling(message=why)
    _through_outage(lambda: client.set_flow_run_state(run.id, state), stoppable=False)


def _through_outage(call: Callable[[], T], stoppable: bool = True) -> T | None:
    """`call()`, again while the Prefect API does not answer (refused connections, 5xx), for up to API_OUTAGE_S.
    None when the API stayed away, or (if `stoppable`) the fleet was stopped meanwhile."""
    deadline = time.monotonic() + API_OUTAGE_S
    while True:
        if stoppable and interrupt.requested():
            return None
        try:
            return call()
        except (httpx.TransportError, PrefectHTTPStatusError) as exc:
            if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code < 500:
                raise
            if time.monotonic() >= deadline:
                return None
            time.sleep(WATCH_POLL_S)


def _ui_url(flow_run_id: UUID) -> str | None:
    base = PREFECT_UI_URL.value()
    return f"{base}/runs/flow-run/{flow_run_id}" if base else None


def check_workers(spec: FleetSpec) -> None:
    """Before anything runs: a fleet that dispatches to workers needs a Prefect API that answers, the fleet-target
    deployment on it, and every work queue its runs go to (the targets' and the deployment's) in that deployment's
    pool, with a worker polling it: the server would create a missing queue for the run, and the run would wait for
    a worker forever. InputError naming the field."""
    if spec.dispatch is not Dispatch.WORKERS:
        return
    url = PREFECT_API_URL.value()
    if not url:
        raise InputError("dispatch", "workers dispatch needs the Prefect server the workers poll, and "
                         "PREFECT_API_URL is unset", "start one (`make stack` prints PREFECT_API_URL=...), export "
                         "it and run again, or use dispatch: local")
    try:
        httpx.get(f"{url}/health", timeout=HEALTH_TIMEOUT_S).raise_for_status()
    except httpx.HTTPError as exc:
        raise InputError("dispatch", f"the Prefect API at {url} does not answer ({describe(exc)})",
                         "start it (`make stack`) or set PREFECT_API_URL to the server the workers poll") from None
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            raise InputError("dispatch", f"the Prefect server at {url} has no deployment {DEPLOYMENT}",
                             "deploy it from the project: .venv/bin/prefect --no-prompt deploy --all") from None
        pool = found.work_pool_name
        queues = {q.name: q for q in client.read_work_queues(work_pool_name=pool)}
    wanted = [("dispatch", found.work_queue_name)] + [(f"targets[{i}].work_queue", t.work_queue)
                                                      for i, t in enumerate(spec.targets) if t.work_queue]
    for field, name in wanted:
        queue = queues.get(name)
        start = f"start a worker on it (prefect worker start -p {pool} -q {name})"
        if queue is None:
            raise InputError(field, f"work pool {pool} has no queue {name!r} (it has: {', '.join(sorted(queues))}), "
                             "so no worker would take the run", f"{start} or name one of those queues")
        if queue.status is not WorkQueueStatus.READY:
            why = "is paused" if queue.status is WorkQueueStatus.PAUSED else "has no worker polling it"
            raise InputError(field, f"work queue {pool}/{name} {why}, so its runs would wait for a worker forever",
                             f"{start}, or resume the queue (prefect work-queue resume {name} -p {pool})")
