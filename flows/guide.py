"""The guide on one cluster: every stage a task, independent stages concurrent, cleanup always, reports at the end.

SIGINT and SIGTERM stop it (`meshid.interrupt`): no further stage starts, the running ones end within the stop bound,
cleanup follows the policy (an interrupted run is cleaned up unless the policy is `never`), and the report says
`interrupted` and names the stage that ran when the signal came. A cancelled or crashed flow run's hook finishes the
cleanup from the ledger if the run could not (`flows.cleanup_hooks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import allow_failure, quote

from flows.cleanup_hooks import finish_cleanup
from flows.futures import first_done, value_or_why
from meshid import __version__, diagnostics, interrupt, reports
from meshid.models import GuideParams, RunMode
from meshid.providers import ClusterHandle
from meshid.results import Outcome, RunReport, StageResult, TargetRef
from meshid.settings import load_settings
from meshid.stages.registry import CLEANUP, ROLLBACK, graph
from meshid.stages.run_context import RunContext
from meshid.stages.runner import describe
from tasks import artifact_sink
from tasks.stage import TASKS, StageFailed, artifact_key, publish_run

# How often the stage and job loops look for a stop request while nothing they run ends. A stop ends the running
# stages themselves (interrupt.check in every wait), and their end wakes the loop at once; each look costs a waiter
# per running future.
STOP_POLL_S = 1.0
# The flow run a process's runs belong to, for the hooks that recover them: the fleet's for the targets it runs here
# (the fleet flow sets it), else the run's own. Prefect's `flow_run.root_flow_run_id` would read each parent level
# from the API, and from a worker's run reach the fleet's flow run in another process.
PROCESS_FLOW_RUN: ContextVar[str | None] = ContextVar("meshid_process_flow_run", default=None)
NOT_STARTED = "not started: the run was"  # a stage a stop request kept from starting


def resolve(name: str, future: PrefectFuture) -> StageResult:
    """The stage's result, also when its task failed (checks failed, or a transient error outlived retries)."""
    value = value_or_why(future, (StageResult, StageFailed))
    if isinstance(value, StageResult):
        return value
    if isinstance(value, StageFailed):
        return value.result
    return StageResult.from_checks(name, [], started_at=datetime.now(UTC), error=value)  # its task crashed


def submit(stage: str, ctx: RunContext, cluster: ClusterHandle | None,
           after: Iterable[PrefectFuture] = ()) -> PrefectFuture:
    """Start stage `stage`'s task on `cluster` once the tasks of `after` finished, whatever their outcome; Prefect
    records both as the task run's inputs, so its graph shows what each stage stood on."""
    return TASKS[stage].submit(quote(ctx), cluster=cluster, wait_for=[allow_failure(f) for f in after])


def reached(results: Mapping[str, StageResult]) -> ClusterHandle | None:
    """The run's cluster: the handle of the stage that started or reached it last (cluster-start, else preflight for
    an existing cluster), or None."""
    return next((r.cluster for r in reversed(results.values()) if r.cluster is not None), None)


def kubeconfig_from_block(params: GuideParams) -> str | None:
    """The kubeconfig from the target's Prefect Secret block, if it names one."""
    if not params.target.kubeconfig_secret_block:
        return None
    from prefect.blocks.system import Secret

    return Secret.load(params.target.kubeconfig_secret_block).get()


def _skipped(name: str, why: str) -> StageResult:
    now = datetime.now(UTC)
    return StageResult(name=name, outcome=Outcome.SKIPPED, started_at=now, ended_at=now, error=why)


def run_stages(ctx: RunContext, on_done) -> tuple[dict[str, StageResult], dict[str, PrefectFuture]]:
    """Run every stage of the run's mode as soon as its dependencies passed, on the cluster the stages before it
    reached; skip those whose dependencies did not, and every one not started once the run is stopped. Returns the
    results in the order they came, and the tasks that ran."""
    pending = graph(ctx.params.mode).needs()
    running: dict[str, PrefectFuture] = {}
    ran: dict[str, PrefectFuture] = {}
    results: dict[str, StageResult] = {}
    while pending or running:
        if interrupt.requested():
            for name in pending:
                results[name] = _skipped(name, f"{NOT_STARTED} {interrupt.Interrupted(interrupt.received())}")
            pending.clear()
        for name, deps in list(pending.items()):
            bad = [d for d in deps if d in results and results[d].outcome is not Outcome.PASSED]
            if bad:
                results[name] = _skipped(name, f"skipped: {', '.join(bad)} did not pass")
                del pending[name]
            elif all(d in results for d in deps):
                running[name] = submit(name, ctx, reached(results), [ran[d] for d in deps])
                del pending[name]
        if not running:
            continue
        for name in first_done(running, STOP_POLL_S):
            ran[name] = running.pop(name)
            results[name] = resolve(name, ran[name])
            on_done(results)
    return results, ran


def _diagnose(ctx: RunContext, failed: list[str]) -> diagnostics.Diagnostics | None:
    """Events, pods, logs, custom resources and releases, as the records of the failed stages and of those they stand
    on name them, saved under the run directory and as an artifact."""
    if ctx.handle is None:
        return None
    found = graph(ctx.params.mode).evidence(failed, ctx.params)
    diag = diagnostics.collect(ctx.cluster, ctx.helm, list(found.namespaces), list(found.releases),
                               ctx.run_dir / "diagnostics", list(found.kinds))
    artifact_sink.markdown(artifact_key(ctx, "diagnostics"), diag.markdown(),
                           f"diagnostics of {ctx.run_id} (files in {ctx.run_dir / 'diagnostics'})")
    return diag


def run_guide(ctx: RunContext) -> RunReport:
    """Every stage, diagnostics on failure, cleanup always; returns the run's report (files in the run dir)."""
    started = datetime.now(UTC)
    progress = artifact_sink.progress(artifact_key(ctx, "progress"), f"stages of {ctx.run_id}")

    order = graph(ctx.params.mode).order

    def advance(results: dict[str, StageResult]) -> None:
        progress(100.0 * len(results) / len(order))

    results, ran = run_stages(ctx, advance)
    failed = [name for name, result in results.items() if result.outcome is Outcome.FAILED]
    interrupted = interrupt.received() is not None
    # cleanup reads the outcome here: an unfinished run is cleaned up, a failed one kept under `on-success`
    ctx.ledger.update_run(outcome=(Outcome.INTERRUPTED if interrupted else Outcome.FAILED if failed
                                   else Outcome.PASSED).value)
    cluster = reached(results)
    diag_dir = None
    if failed and not interrupted:
        try:
            diag = _diagnose(ctx.on(cluster), failed)
            diag_dir = str(ctx.run_dir / "diagnostics") if diag else None
        except Exception as exc:  # diagnostics must never hide the failure they describe
            get_run_logger().warning("collecting diagnostics failed: %s", describe(exc))
    cleanup = submit(CLEANUP.name, ctx, cluster, ran.values())
    results[CLEANUP.name] = resolve(CLEANUP.name, cleanup)
    advance(results)
    stages = [results[n] for n in order]
    if ctx.params.mode is RunMode.ROLLOUT and (failed or interrupted) and ctx.ledger.entries:
        stages.append(resolve(ROLLBACK.name, submit(ROLLBACK.name, ctx, cluster, [cleanup])))  # nothing half-applied
    signum = interrupt.received()
    report = run_report(ctx, stages, started, diagnostics_dir=diag_dir,
                        signal=interrupt.signal_name(signum) if signum else None,
                        interrupted_stages=interrupted_stages(stages) if signum else ())
    reports.write_junit([report], ctx.run_dir / "junit.xml")
    artifact_sink.markdown(artifact_key(ctx, "summary"), reports.run_summary_markdown(report),
                           f"{ctx.run_id}: {report.outcome.value}")
    publish_run(ctx, stages)
    return report


def run_report(ctx: RunContext, stages: list[StageResult], started: datetime, **interruption: Any) -> RunReport:
    """The run's report (`interruption`: RunReport.build's diagnostics_dir, signal, interrupted_stages), its
    outcome in the run's ledger, and `report.json` in the run dir."""
    target = ctx.params.target
    versions = {"meshid": __version__} | {k: v for stage in stages for k, v in stage.versions.items()}
    report = RunReport.build(run_id=ctx.run_id, target=TargetRef(name=target.name, provider=target.provider.value),
                             trust_domain=ctx.params.trust_domain, stages=stages, versions=versions,
                             started_at=started, fixtures=(ctx.params.namespaces.probe,), **interruption)
    ctx.ledger.update_run(outcome=report.outcome.value, stage=report.stopped_at or report.failed_stage,
                          signal=report.signal)
    reports.write_json(report, ctx.run_dir / "report.json")
    return report


def interrupted_stages(stages: list[StageResult]) -> list[str]:
    """The stages the signal stopped (several run side by side); when none was running, the first it kept from
    starting (or cleanup, when the signal came after every stage)."""
    stopped = [s.name for s in stages if s.outcome is Outcome.INTERRUPTED]
    never = [s.name for s in stages if s.outcome is Outcome.SKIPPED and s.error and NOT_STARTED in s.error]
    return stopped or never[:1] or [CLEANUP.name]


def start_run(params: GuideParams, kubeconfig_text: str | None = None) -> RunContext:
    """A run of this flow run: its ledger names the flow run and the process's flow run (`PROCESS_FLOW_RUN`, for the
    hooks). `kubeconfig_text`: the target's Secret block's kubeconfig, when the caller loaded it already."""
    return RunContext.create(params, load_settings(), kubeconfig_text=kubeconfig_text or kubeconfig_from_block(params),
                             flow_run_id=flow_run.id, root_flow_run_id=PROCESS_FLOW_RUN.get() or flow_run.id)


def end_state(report: RunReport, ctx: RunContext, where: str, data) -> State:  # noqa: ANN001 - the state's data
    """Completed when passed, Cancelled when interrupted (the cleanup's line in the message), else Failed."""
    if report.outcome in (Outcome.PASSED, Outcome.UNCHANGED):
        return Completed(message=f"{report.outcome.value} on {where}", data=data)
    if report.outcome is Outcome.INTERRUPTED:
        run = ctx.ledger.run
        return Cancelled(message=f"interrupted by {report.signal} at {report.stopped_at} on {where}; cleanup: "
                                 f"{run.summary if run else 'not recorded'}", data=data)
    return Failed(message=f"failed at {report.failed_stage} on {where}; report in {ctx.run_dir}", data=data)


@flow(name="guide", flow_run_name="guide-{params.target.name}-{params.trust_domain}",
      task_runner=ThreadPoolTaskRunner(max_workers=4), log_prints=True,
      on_cancellation=[finish_cleanup], on_crashed=[finish_cleanup])
def guide(params: GuideParams = GuideParams(), json_report: str | None = None,
          junit_report: str | None = None) -> State:
    """Run the Kong Mesh "Issue identity with MeshIdentity Spire provider" guide on one cluster.

    Args:
        params: the target cluster, trust domain, charts, permission match, cleanup policy and timeouts.
        json_report: also write the JSON report here.
        junit_report: also write the JUnit XML (one testcase per stage) here.
    """
    with interrupt.signals_handled():
        ctx = start_run(params)
        with artifact_sink.publishing():
            report = run_guide(ctx)
        if json_report:
            reports.write_json(report, Path(json_report))
        if junit_report:
            reports.write_junit([report], Path(junit_report))
        return end_state(report, ctx, f"{params.target.name} ({params.trust_domain})", report.to_json_dict())
