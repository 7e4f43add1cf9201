"""Which job starts next: the jobs (target x trust domain) of a fleet, the circuit breaker and the scheduler with
its concurrency, one job per cluster, and fail-fast."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from meshid.fleet.clusters import cluster_key
from meshid.fleet.results import TargetResult
from meshid.fleet.spec import FleetSpec, FleetTarget
from meshid.models import GuideParams
from meshid.results import Outcome


@dataclass(frozen=True)
class Job:
    """One target x trust domain to run: its guide parameters, its rollout wave and its cluster (`cluster_key`)."""

    target: FleetTarget
    trust_domain: str
    params: GuideParams
    cluster: str
    wave: int | None = None

    @property
    def key(self) -> str:
        """`target/trust domain`."""
        return f"{self.target.name}/{self.trust_domain}"


def jobs(spec: FleetSpec, targets: Sequence[FleetTarget], wave: int | None = None) -> list[Job]:
    """Every target x trust domain of `targets`, trust domain by trust domain."""
    return [Job(t, td, spec.params_for(t, td), cluster_key(t), wave) for td in spec.trust_domains for t in targets]


@dataclass
class CircuitBreaker:
    """Opens after `limit` infrastructure failures (None: never)."""

    limit: int | None
    failures: list[str] = field(default_factory=list)

    def record(self, result: TargetResult) -> None:
        """Count `result` if it is an infrastructure failure."""
        if result.outcome is Outcome.FAILED and result.infrastructure:
            self.failures.append(f"{result.key} at {result.failed_stage}")

    @property
    def open(self) -> bool:
        """True once the limit is reached."""
        return self.limit is not None and len(self.failures) >= self.limit

    @property
    def reason(self) -> str:
        """Why targets are no longer started."""
        return (f"circuit breaker open after {len(self.failures)} infrastructure failures "
                f"({'; '.join(self.failures)}): not started")


@dataclass
class Scheduler:
    """Which job starts next: at most `concurrency` at once, one per cluster, none after a stop (fail-fast or an
    open circuit breaker)."""

    pending: list[Job]
    concurrency: int
    fail_fast: bool
    breaker: CircuitBreaker
    running: list[Job] = field(default_factory=list)
    stopped: str | None = None

    def __post_init__(self) -> None:
        self.pending = list(self.pending)  # the caller's list stays as it was

    def start_next(self) -> Job | None:
        """The next job to start now (it counts as running), or None."""
        if self.stopped or len(self.running) >= self.concurrency:
            return None
        busy = {j.cluster for j in self.running}
        job = next((j for j in self.pending if j.cluster not in busy), None)
        if job is not None:
            self.pending.remove(job)
            self.running.append(job)
        return job

    def finish(self, job: Job, result: TargetResult) -> None:
        """Record a finished job; a failure may stop the fleet."""
        self.running.remove(job)
        self.breaker.record(result)
        if self.breaker.open:
            self.stopped = self.breaker.reason
        elif self.fail_fast and result.outcome is Outcome.FAILED:
            self.stopped = f"fail-fast: {result.key} failed" + (f" at {result.failed_stage}"
                                                                 if result.failed_stage else "")

    def skip_rest(self) -> list[TargetResult]:
        """Skipped results for the jobs never started, with the reason."""
        skipped = [TargetResult.not_run(j, Outcome.SKIPPED, self.stopped or "not started") for j in self.pending]
        self.pending = []
        return skipped
