"""The one way a stage becomes a Prefect task (retries for transient errors only, artifacts, a result), and `TASKS`:
one task per record of `meshid.stages.registry`.

A stage that fails (or is interrupted) raises `StageFailed` carrying its `StageResult`, so the task run is Failed in
the UI and the flow still gets every check; so does a transient error that outlives the retries.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.runtime import task_run as current_task_run
from prefect.states import State

from meshid import reports, terminal
from meshid.errors import MeshidError, is_transient
from meshid.naming import slug
from meshid.providers import ClusterHandle
from meshid.results import Outcome, StageResult
from meshid.stages import registry
from meshid.stages.run_context import RunContext
from meshid.stages.runner import describe, run_stage
from tasks import artifact_sink

RETRIES = 2
RETRY_DELAYS_S = [2, 5]


class StageFailed(MeshidError):
    """A stage finished failed; `result` holds its checks, touched resources and error."""

    def __init__(self, result: StageResult) -> None:
        super().__init__(result)
        self.result = result

    def __str__(self) -> str:
        codes = ", ".join(self.result.codes)
        return f"stage {self.result.name} {self.result.outcome.value}" + (f" ({codes})" if codes else "") + (
            f": {self.result.error}" if self.result.error else "")


def retry_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry only when the attempt ended in a transient error (never for a failed check)."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


def artifact_key(ctx: RunContext, suffix: str) -> str:
    """A valid artifact key (`^[a-z0-9-]*$`) for this run's target and trust domain."""
    return slug(f"{ctx.params.target.name}-{ctx.params.trust_domain}-{suffix}")


def publish(ctx: RunContext, result: StageResult) -> None:
    """The stage's own artifacts (queued: see artifact_sink): its summary when it needs a look of its own (failed,
    interrupted, warned or retried) and the tables it found (preflight's impact). Every stage's summary and the rows it
    touched reach the run's artifacts at the end (`publish_run`): each artifact is an API write, and two or three per
    stage were most of a run's writes."""
    key = artifact_key(ctx, result.name)
    if result.outcome is not Outcome.PASSED or result.warnings or result.flaky:
        artifact_sink.markdown(key, reports.stage_markdown(result), f"{result.name}: {result.outcome.value}")
    for name, table in result.tables.items():
        artifact_sink.table(f"{key}-{name}", table, f"{name} found by {result.name}")


def publish_run(ctx: RunContext, stages: list[StageResult]) -> None:
    """What every stage of the run touched, one table `<target>-<td>-touched` with a `stage` column (a plan's rows are
    what a rollout would do)."""
    rows = [{"stage": stage.name, **row} for stage in stages for row in reports.touched_rows(stage)]
    if rows:
        artifact_sink.table(artifact_key(ctx, "touched"), rows, f"what {ctx.run_id} touched, stage by stage")


def stage_task(stage: registry.Stage) -> Task:
    """A Prefect task that runs `stage` against a RunContext on `cluster`, the handle the stage that started or
    reached the cluster returned (a parameter, so Prefect records where it came from)."""
    name = stage.name
    first_started: dict[str, datetime] = {}  # by task run: where its retries' duration starts

    @task(name=name, retries=RETRIES, retry_delay_seconds=RETRY_DELAYS_S, retry_condition_fn=retry_transient,
          cache_policy=NO_CACHE)  # no tags: each tag costs a concurrency-limit lookup per task run
    def run(ctx: RunContext, cluster: ClusterHandle | None = None) -> StageResult:
        attempt = current_task_run.run_count or 1
        started = first_started.setdefault(current_task_run.id, datetime.now(UTC))
        logger = get_run_logger()
        logger.info("stage %s, attempt %d", name, attempt)
        terminal.stage_started(name, attempt)
        try:
            result = run_stage(name, stage.body, ctx.on(cluster), attempt=attempt, started_at=started)
        except Exception as exc:
            logger.warning("stage %s attempt %d: transient error, %s", name, attempt, exc)
            if attempt <= RETRIES:
                raise
            result = StageResult.from_checks(name, [], started_at=started, attempts=attempt, error=describe(exc))
        first_started.pop(current_task_run.id, None)
        publish(ctx, result)
        terminal.stage_ended(result)
        shown = terminal.marks(sys.stderr)  # Prefect's console handler writes to stderr
        for check in result.checks:
            (logger.info if not check.failed else logger.warning)("%s", terminal.check_line(check, shown))
        if result.outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
            raise StageFailed(result)
        return result

    return run


TASKS = {stage.name: stage_task(stage) for stage in registry.STAGES}
