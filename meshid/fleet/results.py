"""What a fleet run comes to: each target x trust domain's TargetResult (with its StageLines) and the FleetReport."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from meshid import checks
from meshid.fleet.spec import FleetMode
from meshid.redact import redact
from meshid.reports import markdown_table
from meshid.results import SUCCESS, CheckResult, Outcome, RunReport, StageResult, TargetRef

if TYPE_CHECKING:
    from meshid.fleet.scheduling import Job

# tools missing, cluster unreachable, run lost
INFRA_CODES = frozenset({checks.MID001.code, checks.MID002.code, checks.MID082.code})
LOCAL_WORKER = "local"  # the `worker` of a result the fleet's own process ran


class StageLine(BaseModel):
    """One stage of a target's run, as the fleet report (and the nightly trend) carries it."""

    model_config = ConfigDict(frozen=True)

    name: str
    outcome: Outcome
    duration_s: float
    attempts: int
    flaky: bool


class TargetResult(BaseModel):
    """What one target x trust domain of a fleet run came to; `report` is the guide's (or plan's) run report."""

    model_config = ConfigDict(frozen=True)

    target: str
    trust_domain: str
    outcome: Outcome
    failed_stage: str | None = None
    duration_s: float = 0.0
    codes: list[str] = []
    wave: int | None = None
    rolled_back: bool | None = None
    infrastructure: bool = False
    run_id: str | None = None
    run_url: str | None = None
    flow_run_id: str | None = None  # the target's flow run (a subflow, or a deployment run on a worker)
    worker: str | None = None  # the Prefect worker that ran it, `local` for the fleet's own process
    reason: str | None = None
    stages: list[StageLine] = []
    report: RunReport | None = Field(None, exclude=True)

    @property
    def key(self) -> str:
        """`target/trust domain`: one job of the fleet."""
        return f"{self.target}/{self.trust_domain}"

    @classmethod
    def from_report(cls, report: RunReport, wave: int | None = None, run_url: str | None = None,
                    flow_run_id: str | None = None, worker: str | None = None) -> TargetResult:
        """The result of a finished run; a `rollback` stage in the report sets `rolled_back`."""
        codes = list(dict.fromkeys(c.code for s in report.stages for c in s.checks if c.blocking))
        rollback = next((s for s in report.stages if s.name == "rollback"), None)
        failed = next((s for s in report.stages if s.name == report.failed_stage), None)
        return cls(target=report.target.name, trust_domain=report.trust_domain, outcome=report.outcome,
                   failed_stage=report.failed_stage, duration_s=round(report.duration_s, 3), codes=codes,
                   wave=wave, rolled_back=None if rollback is None else rollback.outcome is Outcome.PASSED,
                   infrastructure=infrastructure_failure(report), run_id=report.run_id, run_url=run_url,
                   flow_run_id=flow_run_id, worker=worker, reason=failed.error if failed else None, report=report,
                   stages=[StageLine(name=s.name, outcome=s.outcome, duration_s=round(s.duration_s, 3),
                                     attempts=s.attempts, flaky=s.flaky) for s in report.stages])

    @classmethod
    def not_run(cls, job: Job, outcome: Outcome, reason: str) -> TargetResult:
        """A job that was skipped, or failed before its run could report (e.g. its cluster's lock timed out)."""
        return cls(target=job.target.name, trust_domain=job.trust_domain, outcome=outcome, wave=job.wave,
                   reason=reason)

    @classmethod
    def lost(cls, job: Job, why: str, flow_run_id: str | None, worker: str | None,
             run_url: str | None = None) -> TargetResult:
        """A job whose run ended without a report (its process or worker died, or it never started): failed, an
        infrastructure failure (MID082, counted by the circuit breaker)."""
        return cls(target=job.target.name, trust_domain=job.trust_domain, outcome=Outcome.FAILED, wave=job.wave,
                   codes=[checks.MID082.code], infrastructure=True, flow_run_id=flow_run_id, worker=worker, run_url=run_url,
                   reason=why)

    def junit_report(self) -> RunReport:
        """The run report, or one `fleet` stage standing for a job that never reported (skipped or errored)."""
        if self.report is not None:
            return self.report
        now = datetime.now(UTC)
        stage = StageResult(name="fleet", outcome=self.outcome, started_at=now, ended_at=now, error=self.reason)
        return RunReport.build(run_id=self.run_id or "not-run", target=TargetRef(name=self.target, provider="fleet"),
                               trust_domain=self.trust_domain, stages=[stage], versions={}, started_at=now,
                               ended_at=now)

    def to_json_dict(self) -> dict[str, Any]:
        """The result in the JSON report."""
        data = self.model_dump(mode="json")
        data["reason"] = redact(self.reason) if self.reason else None
        return data


def infrastructure_failure(report: RunReport) -> bool:
    """Failed because the cluster could not be started or reached: a failed MID001/MID002, or an error before any
    stage saw the API answer."""
    if report.failed_stage is None:
        return False
    found = [c for s in report.stages for c in s.checks]
    if any(c.code in INFRA_CODES and c.blocking for c in found):
        return True
    reached = any(c.code == checks.MID002.code and not c.failed for c in found)
    failed = next(s for s in report.stages if s.name == report.failed_stage)
    return failed.error is not None and not reached


_COLUMNS = ("target", "trust_domain", "wave", "outcome", "failed_stage", "codes", "duration_s", "worker", "run")


class FleetReport(BaseModel):
    """A fleet run: every target's result, the rollout's wave checks (MID080), why it halted, if it did, and the
    signal that interrupted it, if one did."""

    fleet_run_id: str
    mode: FleetMode
    results: list[TargetResult]
    checks: list[CheckResult] = []
    halted: str | None = None
    interrupted: str | None = None

    @property
    def outcome(self) -> Outcome:
        """Interrupted when a signal stopped it; else failed when a target or a wave check failed, or a rollout
        halted."""
        if self.interrupted:
            return Outcome.INTERRUPTED
        bad = any(r.outcome is Outcome.FAILED for r in self.results) or any(c.blocking for c in self.checks)
        return Outcome.FAILED if bad or self.halted else Outcome.PASSED

    def to_json_dict(self) -> dict[str, Any]:
        """`{"outcome", "results": [{"target", "trust_domain", "outcome", "failed_stage", "duration_s", ...}]}`."""
        return {"fleet_run_id": self.fleet_run_id, "mode": self.mode.value, "outcome": self.outcome.value,
                "halted": redact(self.halted) if self.halted else None, "interrupted": self.interrupted,
                "checks": [c.model_dump(mode="json") for c in self.checks],
                "results": [r.to_json_dict() for r in self.results]}

    def rows(self) -> list[dict[str, Any]]:
        """One row per target x trust domain, for the summary table artifact."""
        return [dict(zip(_COLUMNS, (r.target, r.trust_domain, r.wave, r.outcome.value, r.failed_stage,
                                    ", ".join(r.codes), r.duration_s, r.worker,
                                    r.run_url or r.run_id or redact(r.reason or ""))))
                for r in self.results]

    def markdown(self) -> str:
        """The fleet at a glance: outcome, why it halted, wave checks, then every target with a link to its run."""
        parts = [f"## fleet {self.mode.value} {self.fleet_run_id}: {self.outcome.value.upper()}"]
        if self.halted:
            parts.append(markdown_table(["halted"], [[self.halted]]))
        if self.checks:
            parts.append(markdown_table(["code", "outcome", "message"],
                                        [[c.code, c.outcome.value, c.message] for c in self.checks]))
        rows = [[r.target, r.trust_domain, r.wave, r.outcome.value, r.failed_stage, ", ".join(r.codes),
                 f"{r.duration_s:.1f}", r.rolled_back, r.reason if r.outcome not in SUCCESS else "",
                 r.worker, r.run_url or r.run_id] for r in self.results]
        parts.append(markdown_table(["target", "trust domain", "wave", "outcome", "failed stage", "codes", "seconds",
                                     "rolled back", "reason", "worker", "run"], rows))
        return "\n\n".join(parts) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write `to_json_dict()` to `path`, creating its directory."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json_dict(), indent=2) + "\n", encoding="utf-8")
        return path
