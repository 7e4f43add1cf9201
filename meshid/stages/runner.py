"""Run one stage body and turn what it did into a `StageResult`, with the cluster it returns (the stages that start or
reach the run's cluster return its handle; the flow passes it on to the stages after them).

Transient errors propagate, so the caller (a Prefect task with `retry_condition_fn`) retries the stage; a stop request
(`meshid.interrupt.Interrupted`) ends it as interrupted; any other error ends it as failed with the error's message,
which is already redacted by meshid's exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from meshid.errors import MeshidError, is_transient
from meshid.interrupt import Interrupted
from meshid.providers import ClusterHandle
from meshid.redact import redact
from meshid.results import StageResult
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput

StageBody = Callable[[RunContext, StageOutput], ClusterHandle | None]


def describe(exc: BaseException) -> str:
    """A one-line, redacted description of an error for reports."""
    text = str(exc) if isinstance(exc, MeshidError) else f"{type(exc).__name__}: {exc}"
    return redact(text)


def run_stage(name: str, body: StageBody, ctx: RunContext, attempt: int = 1,
              started_at: datetime | None = None) -> StageResult:
    """Run `body`; return its result, or re-raise a transient error for the caller to retry."""
    started = started_at or datetime.now(UTC)
    out = StageOutput()
    error, interrupted, cluster = None, False, None
    try:
        cluster = body(ctx, out)
    except Exception as exc:
        if is_transient(exc):
            raise
        error, interrupted = describe(exc), isinstance(exc, Interrupted)
    return StageResult.from_checks(name, out.checks, started_at=started, attempts=attempt, http=out.http,
                                   touched=out.touched, error=error, transient_calls=out.transient_calls,
                                   interrupted=interrupted, tables=out.tables, cluster=cluster,
                                   versions=out.versions)
