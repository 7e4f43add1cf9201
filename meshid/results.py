"""What a run found: check results, stage results and the run report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, computed_field, model_validator


class Severity(StrEnum):
    """How much a failed check matters: `warn` never fails its stage, `fail` does."""

    WARN = "warn"
    FAIL = "fail"


class Outcome(StrEnum):
    """Outcome of a stage; checks only ever pass or fail (`Verdict`), runs also end interrupted or unchanged
    (`RunOutcome`)."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # a signal stopped it while it ran
    UNCHANGED = "unchanged"  # a run that passed and found everything as asked: it changed nothing


Verdict = Literal[Outcome.PASSED, Outcome.FAILED]
RunOutcome = Literal[Outcome.PASSED, Outcome.FAILED, Outcome.INTERRUPTED, Outcome.UNCHANGED]
SUCCESS = frozenset({Outcome.PASSED, Outcome.UNCHANGED})  # a run (or fleet target) that needs nothing more
# What a stage does (or, in a plan, would do) to the cluster (Touched.action): anything else only observes or reuses
# what was there, so a run with none of these is `unchanged`.
CHANGES = frozenset({"created", "configured", "installed", "upgraded", "restarted", "deleted", "uninstalled",
                     "rolled back", "started", "would create", "would update", "would install", "would upgrade"})
UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda d: d.astimezone(UTC))]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class CheckResult(_Record):
    """One coded check; `hint` tells the operator what to do and is set only when the check failed."""

    code: str
    severity: Severity
    outcome: Verdict
    message: str
    hint: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED

    @property
    def blocking(self) -> bool:
        """True when this check fails its stage: failed with severity `fail`."""
        return self.failed and self.severity is Severity.FAIL


class HttpExchange(_Record):
    """The last HTTP answer a connectivity stage saw; `status` is None when no answer came (see `error`)."""

    status: int | None
    body: str
    error: str | None = None


class Touched(_Record):
    """One thing a stage touched: a resource, pod, SPIFFE ID or helm release."""

    kind: str
    namespace: str | None
    name: str
    action: str
    detail: str = ""


class StageResult(_Record):
    """Result of one stage; `duration_s` spans all attempts, from `started_at` to `ended_at`."""

    name: str
    outcome: Outcome
    attempts: int = Field(default=1, ge=1)
    checks: list[CheckResult] = []
    http: HttpExchange | None = None
    touched: list[Touched] = []
    error: str | None = None
    transient_calls: int = Field(default=0, ge=0)
    tables: dict[str, list[dict[str, str]]] = {}
    started_at: UtcDatetime
    ended_at: UtcDatetime
    # What it found for the stages after it and the run's report, never in its own JSON: the cluster it started or
    # reached (a `meshid.providers.ClusterHandle`), the versions of the components it met.
    cluster: Any = Field(default=None, exclude=True, repr=False)
    versions: dict[str, str] = Field(default={}, exclude=True)

    @model_validator(mode="after")
    def _ends_after_start(self) -> StageResult:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def flaky(self) -> bool:
        """Passed, but only after a retry of the stage or of transient calls inside it."""
        return self.outcome is Outcome.PASSED and (self.attempts > 1 or self.transient_calls > 0)

    @property
    def failed_checks(self) -> list[CheckResult]:
        """Failed checks of either severity."""
        return [c for c in self.checks if c.failed]

    @property
    def warnings(self) -> list[CheckResult]:
        """Failed checks of severity `warn`: reported, but the stage still passes."""
        return [c for c in self.failed_checks if not c.blocking]

    @property
    def codes(self) -> list[str]:
        """Codes of the failed checks, in check order."""
        return [c.code for c in self.failed_checks]

    def changed(self, fixtures: Sequence[str] = ()) -> bool:
        """Whether the stage changed the cluster, leaving aside the run's own test fixtures (namespaces it puts up and
        takes down each time, such as the negative probe's)."""
        return any(t.action in CHANGES and t.namespace not in fixtures
                   and not (t.kind == "Namespace" and t.name in fixtures) for t in self.touched)

    @classmethod
    def from_checks(
        cls,
        name: str,
        checks: Sequence[CheckResult],
        *,
        started_at: datetime,
        ended_at: datetime | None = None,
        attempts: int = 1,
        http: HttpExchange | None = None,
        touched: Sequence[Touched] = (),
        error: str | None = None,
        transient_calls: int = 0,
        interrupted: bool = False,
        tables: Mapping[str, list[dict[str, str]]] | None = None,
        cluster: Any = None,
        versions: Mapping[str, str] | None = None,
    ) -> StageResult:
        """A finished stage: interrupted when a signal stopped it, failed on `error` or on any blocking check, else
        passed; `ended_at` defaults to now."""
        failed = error is not None or any(c.blocking for c in checks)
        return cls(
            name=name,
            outcome=Outcome.INTERRUPTED if interrupted else Outcome.FAILED if failed else Outcome.PASSED,
            attempts=attempts,
            checks=list(checks),
            http=http,
            touched=list(touched),
            error=error,
            transient_calls=transient_calls,
            tables=dict(tables or {}),
            started_at=started_at,
            ended_at=ended_at or datetime.now(UTC),
            cluster=cluster,
            versions=dict(versions or {}),
        )


class TargetRef(_Record):
    """The cluster a run went against."""

    name: str
    provider: str


class RunReport(_Record):
    """One run of the guide against one target and trust domain; make it with `RunReport.build`. An interrupted run
    names the signal and the stages it stopped (those running then; if none was, the first it kept from starting)."""

    run_id: str
    target: TargetRef
    trust_domain: str
    outcome: RunOutcome
    failed_stage: str | None
    stages: list[StageResult]
    versions: dict[str, str]
    started_at: UtcDatetime
    duration_s: float = Field(ge=0)
    diagnostics_dir: str | None = None
    signal: str | None = None
    interrupted_stages: list[str] = []

    @classmethod
    def build(
        cls,
        *,
        run_id: str,
        target: TargetRef,
        trust_domain: str,
        stages: Sequence[StageResult],
        versions: Mapping[str, str],
        started_at: datetime,
        ended_at: datetime | None = None,
        diagnostics_dir: str | None = None,
        signal: str | None = None,
        interrupted_stages: Sequence[str] = (),
        fixtures: Sequence[str] = (),
    ) -> RunReport:
        """The report: interrupted when `signal` stopped it (in `interrupted_stages`), else failed at its first failed
        stage if any, else unchanged when no stage changed the cluster (`fixtures`: see StageResult.changed), else
        passed; `ended_at` defaults to now."""
        failed_stage = next((s.name for s in stages if s.outcome is Outcome.FAILED), None)
        if signal:
            outcome = Outcome.INTERRUPTED
        elif failed_stage:
            outcome = Outcome.FAILED
        else:
            outcome = Outcome.PASSED if any(s.changed(fixtures) for s in stages) else Outcome.UNCHANGED
        return cls(
            run_id=run_id,
            target=target,
            trust_domain=trust_domain,
            outcome=outcome,
            failed_stage=failed_stage,
            stages=list(stages),
            versions=dict(versions),
            started_at=started_at,
            duration_s=((ended_at or datetime.now(UTC)) - started_at).total_seconds(),
            diagnostics_dir=diagnostics_dir,
            signal=signal,
            interrupted_stages=list(interrupted_stages),
        )

    @property
    def stopped_at(self) -> str:
        """The stages an interrupted run stopped, for a message ("" when it was not interrupted)."""
        return ", ".join(self.interrupted_stages)

    def to_json_dict(self) -> dict[str, Any]:
        """The CI report shape; a stage without an HTTP exchange has `"http": null`; an interrupted run adds
        `signal` and `interrupted_stages`. Not redacted: see reports."""
        interrupted = {"signal": self.signal, "interrupted_stages": self.interrupted_stages} if self.signal else {}
        return {
            "run_id": self.run_id,
            "target": self.target.model_dump(mode="json"),
            "outcome": self.outcome.value,
            "failed_stage": self.failed_stage,
            "trust_domain": self.trust_domain,
            "stages": [
                {
                    "name": s.name,
                    "outcome": s.outcome.value,
                    "duration_s": round(s.duration_s, 3),
                    "attempts": s.attempts,
                    "flaky": s.flaky,
                    "checks": [
                        c.model_dump(mode="json", include={"code", "severity", "outcome", "message", "hint"})
                        for c in s.checks
                    ],
                    "http": None if s.http is None else {"status": s.http.status, "body": s.http.body},
                    "error": s.error,
                    **({"tables": s.tables} if s.tables else {}),
                }
                for s in self.stages
            ],
            "versions": dict(self.versions),
            **interrupted,
        }
