"""The fleet: targets x trust domains, validated, rolled out in waves, or planned; one lock per cluster, bounded
concurrency, a circuit breaker, and one summary, JSON report and JUnit for the whole fleet.

Each target x trust domain is a `fleet-job` task that runs a `fleet-target` flow run where the spec's `dispatch`
says (`flows.dispatch`: a subflow here, or a deployment run on a Prefect worker); that run holds its cluster's lock
(`flows.target`). Waves, thresholds, approval, rollback, the breaker, resume and the reports are the same for both
dispatch modes; the plans, thresholds and reports come from `meshid.fleet`.

SIGINT and SIGTERM (a worker cancelling the fleet's run) stop the fleet: no further target starts, and the running
children stop and clean up as `flows.guide` does, each ending Cancelled (on a worker: cancelled through the API). A
deployed validation (the nightly) first recovers the unfinished runs of each target (`meshid.recovery`), in that
target's run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows import dispatch
from flows.cleanup_hooks import finish_cleanup
from flows.futures import first_done, value_or_why
from flows.guide import PROCESS_FLOW_RUN, STOP_POLL_S
from meshid import checks, interrupt, reports
from meshid.fleet.results import FleetReport, TargetResult
from meshid.fleet.rollout_state import RolloutState, fleet_dir
from meshid.fleet.scheduling import CircuitBreaker, Job, Scheduler, jobs
from meshid.fleet.spec import FleetMode, FleetSpec
from meshid.fleet.waves import plan_waves
from meshid.results import SUCCESS, Outcome
from meshid.settings import load_settings
from tasks import artifact_sink

APPROVAL_POLL_S = 5
FLEET_LIMIT = "meshid-fleet"  # global concurrency limit: targets all fleet runs together work on (deployments.setup)

OnResult = Callable[[TargetResult], None]
Submit = Callable[[Job], PrefectFuture]  # starts a job's fleet-job task


@task(name="fleet-job", task_run_name="{job.target.name}-{job.trust_domain}", cache_policy=NO_CACHE)
def run_job(job: Job, spec: FleetSpec, fleet_run_id: str, recover_first: bool) -> TargetResult:
    """One job, where the spec's dispatch runs it (`flows.dispatch`), holding a fleet-wide slot (skipped when
    deployments.setup did not create the limit); the run itself holds its cluster's lock (`flows.target`)."""
    with concurrency(FLEET_LIMIT, occupy=1, strict=False, timeout_seconds=spec.lock_timeout_s):
        return dispatch.run_job(job, spec, fleet_run_id, recover_first)


# Scheduling


def _job_result(future: PrefectFuture, job: Job) -> TargetResult:
    value = value_or_why(future, TargetResult)
    if isinstance(value, TargetResult):
        return value
    return TargetResult.not_run(job, Outcome.FAILED, value)  # e.g. no fleet-wide slot within lock_timeout_s


def run_jobs(submit: Submit, scheduler: Scheduler, on_result: OnResult) -> list[TargetResult]:
    """Run the scheduler's jobs to the end (every future resolved); skipped results for those never started."""
    running: dict[str, PrefectFuture] = {}  # by job key
    started: dict[str, Job] = {}
    results: list[TargetResult] = []
    while True:
        if interrupt.requested() and not scheduler.stopped:
            scheduler.stopped = f"not started: the fleet was {interrupt.Interrupted(interrupt.received())}"
        while (job := scheduler.start_next()) is not None:
            running[job.key], started[job.key] = submit(job), job
        if not running:
            break
        for key in first_done(running, STOP_POLL_S):
            job = started.pop(key)
            result = _job_result(running.pop(key), job)
            scheduler.finish(job, result)
            results.append(result)
            on_result(result)
    for result in scheduler.skip_rest():
        results.append(result)
        on_result(result)
    return results


# Rollout


class Approval(RunInput):
    """The operator's decision before the next rollout wave."""

    approve: bool = Field(description="Start the next wave.")
    comment: str = Field("", description="Why; kept in the fleet run's log and, on a rejection, its report.")


def _approve(wave: int, names: list[str], timeout_s: int) -> str | None:
    """Pause for a manual approval of `wave`; None when approved, else why the rollout halts."""
    logger = get_run_logger()
    ask = Approval.with_initial_data(description=f"Start rollout wave {wave} ({', '.join(names)})?", approve=False)
    try:
        answer = pause_flow_run(wait_for_input=ask, timeout=timeout_s, poll_interval=APPROVAL_POLL_S,
                                key=f"approve-wave-{wave}")
    except FlowPauseTimeout:
        return f"wave {wave} was not approved within {timeout_s} s"
    logger.info("wave %d %s: %s", wave, "approved" if answer.approve else "rejected", answer.comment or "-")
    return None if answer.approve else f"wave {wave} rejected" + (f": {answer.comment}" if answer.comment else "")


def rollout(spec: FleetSpec, fleet_run_id: str, runs_dir: Path, submit: Submit, on_result: OnResult) -> RolloutState:
    """Waves in order, each within its failure threshold; halt, skip the rest, and keep the state for a resume."""
    logger = get_run_logger()
    waves = plan_waves(spec)
    earlier = RolloutState.load(runs_dir, spec.resume_from) if spec.resume_from else None
    state = RolloutState(fleet_run_id=fleet_run_id, resumed_from=spec.resume_from,
                         waves=[[t.name for t in wave] for wave in waves],
                         completed=earlier.completed if earlier else [])
    breaker = CircuitBreaker(spec.circuit_breaker)

    def record(result: TargetResult) -> None:
        state.results.append(result)
        if result.outcome in SUCCESS:
            state.completed.append(result.key)
        state.save(runs_dir)
        on_result(result)

    ran_before = False
    for index, wave in enumerate(waves):
        todo = jobs(spec, wave, index)
        for job in todo:
            if job.key in state.completed:
                record(TargetResult.not_run(job, Outcome.SKIPPED, f"completed in an earlier run "
                                                                   f"(resumed from {spec.resume_from})"))
        todo = [job for job in todo if job.key not in state.completed]
        if todo and not state.halted and index > 0:
            if ran_before and spec.bake_time_s:
                logger.info("baking %g s before wave %d", spec.bake_time_s, index)
                _bake(spec.bake_time_s)
            if spec.approval and not interrupt.requested():
                state.halted = _approve(index, [t.name for t in wave], spec.approval_timeout_s)
        if interrupt.requested() and not state.halted:
            state.halted = f"the fleet was {interrupt.Interrupted(interrupt.received())}"
        if state.halted:
            for job in todo:
                record(TargetResult.not_run(job, Outcome.SKIPPED, f"rollout halted: {state.halted}"))
            continue
        if not todo:
            continue
        scheduler = Scheduler(todo, spec.concurrency, spec.fail_fast, breaker)
        results = [r for r in run_jobs(submit, scheduler, record) if r.outcome is not Outcome.SKIPPED]
        ran_before = True
        check = checks.MID080.result(index, results, spec.failure_threshold)
        state.checks.append(check)
        state.halted = scheduler.stopped or (None if not check.failed else check.message)
        state.save(runs_dir)
    return state


def _bake(seconds: float) -> None:
    """Wait out a bake time, or until the fleet is stopped."""
    try:
        interrupt.wait(seconds)
    except interrupt.Interrupted:
        pass  # the rollout halts right after


# The fleet flow


def _publish(report: FleetReport, runs_dir: Path, json_report: str | None, junit_report: str | None) -> None:
    """Summary table and markdown artifacts; JSON, JUnit and markdown in the fleet run dir and the given paths."""
    mode = report.mode.value
    described = f"fleet {mode} {report.fleet_run_id}: {report.outcome.value}"
    artifact_sink.table(f"fleet-{mode}-summary", report.rows(), described)
    artifact_sink.markdown(f"fleet-{mode}-report", report.markdown(), described)
    folder = fleet_dir(runs_dir, report.fleet_run_id)
    run_reports = [r.junit_report() for r in report.results]
    for json_path, junit_path in ((folder / "fleet.json", folder / "junit.xml"), (json_report, junit_report)):
        if json_path:
            report.write(json_path)
        if junit_path:
            reports.write_junit(run_reports, junit_path, suite_name=f"meshid fleet {mode}")
    (folder / "summary.md").write_text(report.markdown(), encoding="utf-8")


def _announcer(total: int, mode: str) -> OnResult:
    """What happens as each target's result comes in: a Prefect event, the progress artifact, a log line."""
    logger = get_run_logger()
    progress = artifact_sink.progress(f"fleet-{mode}-progress", f"fleet {mode}: targets done")
    done: list[str] = []

    def announce(result: TargetResult) -> None:
        done.append(result.key)
        emit_event(event=f"meshid.target.{result.outcome.value}",
                   resource={"prefect.resource.id": f"meshid.target.{result.target}.{result.trust_domain}",
                             "prefect.resource.name": result.key},
                   payload=result.to_json_dict())
        progress(100.0 * len(done) / total)
        logger.info("%s: %s%s", result.key, result.outcome.value,
                    f" at {result.failed_stage}" if result.failed_stage else f" ({result.reason})" if result.reason
                    else "")

    return announce


@flow(name="fleet", flow_run_name="fleet-{spec.mode}", log_prints=True,
      on_cancellation=[finish_cleanup], on_crashed=[finish_cleanup])
def fleet(spec: FleetSpec, json_report: str | None = None, junit_report: str | None = None) -> State:
    """Run the guide over clusters x trust domains: validate, roll out in waves, or plan (a dry run).

    Args:
        spec: targets, trust domains, mode, concurrency, waves, thresholds, approval, breaker and guide overrides.
        json_report: also write the fleet's JSON report here.
        junit_report: also write JUnit XML (one testsuite per target x trust domain) here.
    """
    process_run = PROCESS_FLOW_RUN.set(str(flow_run.id))  # the targets' runs here are the fleet's
    try:
        with interrupt.signals_handled():
            return _run_fleet(spec, json_report, junit_report)
    finally:
        PROCESS_FLOW_RUN.reset(process_run)


def _run_fleet(spec: FleetSpec, json_report: str | None, junit_report: str | None) -> State:
    dispatch.check_workers(spec)  # bad input stops a deployed run here, before any job
    fleet_run_id, runs_dir = str(flow_run.id), load_settings().runs_dir
    # a deployed validation (the nightly) cleans up what earlier runs of its targets left; each run does it for its
    # target, under its cluster's lock, on the machine that holds its ledgers
    recover_first = bool(deployment.id) and spec.mode is FleetMode.VALIDATE
    rolling = spec.mode is FleetMode.ROLLOUT
    order = jobs(spec, [t for wave in plan_waves(spec) for t in wave] if rolling else spec.targets)
    with artifact_sink.publishing():
        announce = _announcer(len(order), spec.mode.value)
        with ThreadPoolTaskRunner(max_workers=spec.concurrency) as runner:
            def submit(job: Job) -> PrefectFuture:
                return runner.submit(run_job, {"job": job, "spec": spec, "fleet_run_id": fleet_run_id,
                                               "recover_first": recover_first})

            if rolling:
                state = rollout(spec, fleet_run_id, runs_dir, submit, announce)
                results, checks, halted = state.results, state.checks, state.halted
            else:
                scheduler = Scheduler(order, spec.concurrency, spec.fail_fast, CircuitBreaker(spec.circuit_breaker))
                results, checks, halted = run_jobs(submit, scheduler, announce), [], scheduler.stopped
        rank = {job.key: i for i, job in enumerate(order)}
        signum = interrupt.received()
        report = FleetReport(fleet_run_id=fleet_run_id, mode=spec.mode, checks=checks, halted=halted,
                             results=sorted(results, key=lambda r: rank[r.key]),
                             interrupted=interrupt.signal_name(signum) if signum else None)
        _publish(report, runs_dir, json_report, junit_report)
        # deployed validations (the nightly) feed the trend; an interrupted night says nothing about the mesh
        if deployment.id and spec.mode is FleetMode.VALIDATE and report.outcome is not Outcome.INTERRUPTED:
            from flows.trends import publish_trend

            publish_trend(report.to_json_dict())
    counts = {o: sum(r.outcome is o for r in report.results) for o in Outcome}
    summary = ", ".join(f"{n} {o.value}" for o, n in counts.items() if n)
    message = f"fleet {spec.mode.value} {report.outcome.value}: {summary}" + (
        f"; halted: {report.halted}" if report.halted else "")
    state = {Outcome.PASSED: Completed, Outcome.INTERRUPTED: Cancelled}.get(report.outcome, Failed)
    return state(message=message, data=report.to_json_dict())
