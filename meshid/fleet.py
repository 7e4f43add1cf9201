"""Fleet runs, without Prefect or cluster access: the fleet file, wave planning, the scheduler with its failure
threshold, fail-fast and circuit breaker, the fleet report and the rollout state that lets a halted rollout resume.

`flows/fleet.py` runs what this module plans; `flows/dispatch.py` runs each job where the spec's `dispatch` says.
The fleet's parent never reads a target's kubeconfig: it tells clusters apart by `cluster_key` (what the target
names), and whoever touches a cluster names its lock with `lock_name` (what the kubeconfig points at).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from meshid import checks
from meshid.errors import InputError, input_error, pydantic_error
from meshid.kube import api_server, api_server_of, load_kubeconfig
from meshid.models import CleanupPolicy, GuideParams, ProviderName, RunMode, Target, TrustDomain, parse_params
from meshid.redact import redact
from meshid.reports import markdown_table
from meshid.results import SUCCESS, CheckResult, Outcome, RunReport, StageResult, TargetRef
from meshid.naming import slug

CANARY_LABEL, CANARY_VALUE = "wave", "canary"
INFRA_CODES = frozenset({"MID001", "MID002", "MID082"})  # tools missing, cluster unreachable, run lost
LOCK_PREFIX = "meshid-cluster-"
ROLLOUT_STATE = "rollout.json"
_SHARE = re.compile(r"(\d+(?:\.\d+)?)%")
# A Prefect work queue name as meshid accepts it: the API takes almost any text, but a queue is named on worker
# command lines (`prefect worker start -q NAME`) and in URLs, so letters, digits, '.', '_' and '-' only.
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
LOCAL_WORKER = "local"  # the `worker` of a result the fleet's own process ran

FLEET_LIMIT = "meshid-fleet"  # global concurrency limit: targets all fleet runs together work on (deployments.setup)


class Dispatch(StrEnum):
    """Where a fleet runs its targets."""

    LOCAL = "local"  # subflows of the fleet's own process
    WORKERS = "workers"  # runs of the `fleet-target` deployment, picked up by Prefect workers


class FleetMode(StrEnum):
    """What a fleet run does on every target."""

    VALIDATE = "validate"  # the guide end to end, cleaned up (throwaway clusters started and removed)
    ROLLOUT = "rollout"  # the guide on existing clusters, changes kept, in waves, rolled back where it fails
    PLAN = "plan"  # preflight checks and a server-side dry run of every manifest; changes nothing


def _threshold(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise pydantic_error(f"{value} is negative", "give a count of failures (e.g. 0) or a share (e.g. 25%)")
        return value
    match = _SHARE.fullmatch(value.strip())
    if not match or float(match.group(1)) > 100:
        raise pydantic_error(f"{value!r} is neither a count nor a share",
                             "give a count of failures (e.g. 1) or a share of the wave (e.g. 25%)")
    return value.strip()


Threshold = Annotated[int | str, AfterValidator(_threshold)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _queue(value: str) -> str:
    if not _QUEUE.fullmatch(value):
        raise pydantic_error(f"{value!r} is not a work queue name meshid accepts",
                             "use at most 63 letters, digits, '.', '_' and '-', starting with a letter or digit "
                             "(e.g. eu, us-east)")
    return value


class FleetTarget(Target):
    """A fleet's target: the cluster, and the work queue its runs go to when the fleet dispatches to workers."""

    work_queue: Annotated[str, AfterValidator(_queue)] | None = Field(
        None, description="dispatch workers: the work queue of the `fleet-target` deployment's pool whose workers "
        "run this target (e.g. eu: the workers that hold this region's kubeconfigs); default: the deployment's "
        "queue. Ignored by local dispatch.")


class Waves(_Model):
    """How a rollout splits its targets: a canary wave first, then batches."""

    canary: list[str] = Field(default_factory=list, description="Target names of the first wave; default: the "
                              "targets labelled wave=canary, else the first target.")
    label: str | None = Field(None, description="After the canary, one batch per value of this target label, in "
                              "order of first appearance.")
    batches: list[list[str]] = Field(default_factory=list, description="After the canary, these batches of target "
                                     "names, in order; every other target must be in exactly one.")
    batch_size: int | None = Field(None, ge=1, description="After the canary, batches of this many targets in file "
                                   "order. Without label, batches or batch_size the rest is one batch.")

    @model_validator(mode="after")
    def _one_rule(self) -> Waves:
        rules = [name for name in ("label", "batches", "batch_size") if getattr(self, name)]
        if len(rules) > 1:
            raise pydantic_error(f"{' and '.join(rules)} are mutually exclusive",
                                 "choose batches by label, by explicit lists or by size", rules[1])
        return self


class FleetSpec(_Model):
    """A fleet run: targets x trust domains, and how to run over them. Also the fleet file's schema."""

    mode: FleetMode = Field(FleetMode.VALIDATE, description="validate: the guide end to end and cleaned up; "
                            "rollout: existing clusters in waves, changes kept; plan: dry run, changes nothing.")
    dispatch: Dispatch = Field(Dispatch.LOCAL, description="local: every target a subflow of the fleet's process; "
                               "workers: every target x trust domain a run of the fleet-target deployment on a "
                               "Prefect worker (the kubeconfigs are read there, never by the fleet).")
    concurrency: int = Field(2, ge=1, le=64, description="Targets worked on at once (never two on one cluster).")
    trust_domains: list[TrustDomain] = Field(min_length=1, description="Trust domains; validate and plan run every "
                                             "target with each, a rollout takes exactly one.")
    targets: list[FleetTarget] = Field(min_length=1, description="The clusters; names must be unique.")
    waves: Waves = Field(default_factory=Waves, description="Rollout waves: canary first, then batches.")
    failure_threshold: Threshold = Field(0, description="Failures a rollout wave may have without halting: a count "
                                         "(0 halts on the first) or a share such as '25%'.")
    bake_time_s: float = Field(0.0, ge=0, description="Rollout: seconds to wait after a wave before the next.")
    approval: bool = Field(False, description="Rollout: wait for a manual approval (Prefect UI) between waves.")
    approval_timeout_s: int = Field(3600, ge=1, description="Rollout: how long to wait for an approval.")
    fail_fast: bool = Field(False, description="Start no further target after the first failure.")
    circuit_breaker: int | None = Field(3, ge=1, description="Start no further target after this many "
                                        "infrastructure failures (cluster not started or not reachable); unset: off.")
    lock_timeout_s: float = Field(3600.0, gt=0, description="How long a target waits for its cluster's lock.")
    lock_lease_s: float = Field(300.0, ge=60, le=86400, description="The lease of a cluster's lock: renewed every "
                                "3/4 of it while its run lives, so a lock whose holder died (a killed worker) is "
                                "free at most this long (plus the server's 15 s sweep) after its last renewal, and a "
                                "Prefect server outage up to about a quarter of it keeps the lease.")
    resume_from: str | None = Field(None, min_length=1, description="Rollout: id of an earlier, halted fleet run; "
                                    "targets that completed there are skipped.")
    guide: dict[str, Any] = Field(default_factory=dict, description="Guide parameters applied to every run, e.g. "
                                  "{charts: {mirror: URL}, timeouts: {wait_s: 600}, identity_selector: {k: v}} (not "
                                  "target, trust_domain or mode).")
    accept_impact: bool = Field(False, description="Rollout: go on on clusters where the identity switch affects "
                                "workloads beyond meshid's own (plan lists them); without it such a cluster halts.")
    translate_permissions: bool = Field(False, description="Rollout: apply the `rules` equivalent plan proposes for "
                                        "each legacy `from` permission the switch would break, before it switches.")

    @model_validator(mode="after")
    def _consistent(self) -> FleetSpec:
        _unique("targets[{}].name", [t.name for t in self.targets], "give every target its own name")
        _unique("trust_domains[{}]", self.trust_domains, "list each trust domain once")
        if self.mode is not FleetMode.VALIDATE:
            for i, target in enumerate(self.targets):
                if target.provider is not ProviderName.CONTEXT:
                    raise pydantic_error(f"{self.mode.value} works on existing clusters, not on provider "
                                         f"{target.provider.value!r}", "use provider context with a kubeconfig, "
                                         "or mode validate", f"targets[{i}].provider")
        if self.mode is FleetMode.ROLLOUT and len(self.trust_domains) != 1:
            raise pydantic_error("a rollout configures each cluster with one trust domain",
                                 "give exactly one trust domain", "trust_domains")
        if self.resume_from and self.mode is not FleetMode.ROLLOUT:
            raise pydantic_error("only a rollout can be resumed", "drop resume_from or use mode rollout",
                                 "resume_from")
        self._check_waves()
        self._check_guide()
        return self

    def _check_waves(self) -> None:
        names = {t.name for t in self.targets}
        for i, name in enumerate(self.waves.canary):
            if name not in names:
                raise pydantic_error(f"no target is named {name!r}", "list target names", f"waves.canary[{i}]")
        canary = set(canary_names(self))
        placed: set[str] = set()
        for i, batch in enumerate(self.waves.batches):
            for j, name in enumerate(batch):
                if name not in names or name in canary or name in placed:
                    why = "is the canary" if name in canary else "is listed twice" if name in placed else "is unknown"
                    raise pydantic_error(f"target {name!r} {why}", "list every non-canary target exactly once",
                                         f"waves.batches[{i}][{j}]")
                placed.add(name)
        if self.waves.batches and (missing := sorted(names - canary - placed)):
            raise pydantic_error(f"targets {', '.join(missing)} are in no wave",
                                 "add them to a batch (or to the canary)", "waves.batches")
        if self.waves.label:
            for i, target in enumerate(self.targets):
                if target.name not in canary and self.waves.label not in target.labels:
                    raise pydantic_error(f"target {target.name} has no label {self.waves.label!r}",
                                         f"label it (labels: {{{self.waves.label}: ...}}) or choose batches another "
                                         "way", f"targets[{i}].labels")

    def _check_guide(self) -> None:
        for key in ("target", "trust_domain"):
            if key in self.guide:
                raise pydantic_error(f"{key} comes from the fleet's {key}s", f"remove guide.{key}", f"guide.{key}")
        for key in ("mode", "accept_impact", "translate_permissions"):
            if key in self.guide:
                raise pydantic_error(f"{key} comes from the fleet's own {key}", f"remove guide.{key} (set the "
                                     f"fleet's {key})", f"guide.{key}")
        if self.mode is FleetMode.ROLLOUT and self.guide.get("cleanup", "never") != CleanupPolicy.NEVER.value:
            raise pydantic_error("a rollout keeps its changes (and rolls back failed clusters itself)",
                                 "remove guide.cleanup", "guide.cleanup")
        try:
            self.params_for(self.targets[0], self.trust_domains[0])
        except InputError as exc:
            raise pydantic_error(exc.problem, exc.fix, f"guide.{exc.field}") from None

    def params_for(self, target: FleetTarget, trust_domain: str) -> GuideParams:
        """The guide parameters of one run: the `guide` overrides, the target and trust domain; a rollout (and the
        plan of one) runs in rollout order, and a rollout keeps its changes (cleanup never)."""
        data = copy.deepcopy(self.guide)
        data.update(target=target.model_dump(mode="json", exclude={"work_queue"}), trust_domain=trust_domain)
        if self.mode is not FleetMode.VALIDATE:
            data.update(mode=RunMode.ROLLOUT.value, accept_impact=self.accept_impact,
                        translate_permissions=self.translate_permissions)
        if self.mode is FleetMode.ROLLOUT:
            data["cleanup"] = CleanupPolicy.NEVER.value
        return parse_params(data)


def _unique(field_template: str, values: Sequence[str], fix: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise pydantic_error(f"{value!r} appears more than once", fix, field_template.format(i))
        seen.add(value)


def field_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as a fleet-file field path: ("targets", 1, "context") -> "targets[1].context"."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def parse_fleet(data: Any) -> FleetSpec:
    """Validate fleet parameters; raise one InputError naming the field path (e.g. "trust_domains[0]")."""
    try:
        return FleetSpec.model_validate(data)
    except ValidationError as exc:
        raise input_error(exc, field_path) from None


def load_fleet_file(path: str | Path, mode: FleetMode | str | None = None,
                    dispatch: Dispatch | str | None = None) -> FleetSpec:
    """Read and validate a YAML fleet file (`mode` and `dispatch` override the file's); one InputError naming the
    field."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError("fleet_file", f"cannot read {path} ({exc.strerror})", "give a readable YAML file") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise InputError("fleet_file", f"{path} is not valid YAML{line}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise InputError("fleet_file", f"{path} is not a mapping", "start from the example: mode, concurrency, "
                         "trust_domains, targets")
    for key, value in (("mode", mode), ("dispatch", dispatch)):
        if value is not None:
            data[key] = str(value)
    return parse_fleet(data)


def check_kubeconfigs(spec: FleetSpec) -> None:
    """Every kubeconfig file a target names exists and has its context (read-only; no cluster is contacted).

    Only where the targets run: with dispatch workers the files are on the workers, not here."""
    for i, target in enumerate(spec.targets):
        if target.kubeconfig is not None:
            load_kubeconfig(target.kubeconfig, target.context, field=f"targets[{i}]")


# Waves, failure thresholds


def canary_names(spec: FleetSpec) -> list[str]:
    """The canary wave: `waves.canary`, else the targets labelled wave=canary, else the first target."""
    labelled = [t.name for t in spec.targets if t.labels.get(CANARY_LABEL) == CANARY_VALUE]
    return list(spec.waves.canary) or labelled or [spec.targets[0].name]


def plan_waves(spec: FleetSpec) -> list[list[FleetTarget]]:
    """The rollout's waves in order: the canary, then the batches; every target in exactly one wave."""
    by_name = {t.name: t for t in spec.targets}
    canary = canary_names(spec)
    rest = [t for t in spec.targets if t.name not in canary]
    if spec.waves.batches:
        batches = [[by_name[n] for n in batch] for batch in spec.waves.batches]
    elif spec.waves.label:
        groups: dict[str, list[FleetTarget]] = {}
        for target in rest:
            groups.setdefault(target.labels[spec.waves.label], []).append(target)
        batches = list(groups.values())
    elif spec.waves.batch_size:
        batches = [rest[i:i + spec.waves.batch_size] for i in range(0, len(rest), spec.waves.batch_size)]
    else:
        batches = [rest]
    return [[by_name[n] for n in canary], *[b for b in batches if b]]


def allowed_failures(threshold: int | str, size: int) -> int:
    """How many of a wave's `size` targets may fail: the count, or the share rounded down."""
    if isinstance(threshold, int):
        return threshold
    return math.floor(size * float(threshold.rstrip("%")) / 100 + 1e-9)


def wave_check(wave: int, results: Sequence[TargetResult], threshold: int | str) -> CheckResult:
    """MID080 for one finished wave: its failures within the threshold."""
    failed = [r.target for r in results if r.outcome is Outcome.FAILED]
    allowed = allowed_failures(threshold, len(results))
    name = "canary" if wave == 0 else f"wave {wave}"
    detail = f" ({', '.join(failed)})" if failed else ""
    return checks.result("MID080", len(failed) <= allowed, f"{name}: {len(failed)} of {len(results)} failed"
                         f"{detail}, threshold {threshold} allows {allowed}")


# Results


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
                   codes=["MID082"], infrastructure=True, flow_run_id=flow_run_id, worker=worker, run_url=run_url,
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
    reached = any(c.code == "MID002" and not c.failed for c in found)
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


# Jobs, the scheduler and the circuit breaker


def cluster_key(target: Target) -> str:
    """The cluster a target names, as the fleet's parent tells it without reading any kubeconfig: provider and
    cluster, the kubeconfig file and context, or the Secret block and context. Two jobs with one key never run at
    once; two keys on one API server are kept apart by the lock their runs take (`lock_name`)."""
    if target.kubeconfig_secret_block:
        return f"secret:{target.kubeconfig_secret_block}#{target.context or ''}"
    if target.kubeconfig is not None:
        return f"kubeconfig:{target.kubeconfig}#{target.context or ''}"
    return f"{target.provider.value}:{target.resolved_cluster}"


def lock_name(target: Target, kubeconfig_text: str | None = None) -> str:
    """The name of the cluster's global concurrency limit, `meshid-cluster-<slug>`: the same for every target that
    reaches the same API server (the server of the kubeconfig's context: `kubeconfig_text` for a Secret block's,
    else the file), so two runs never share a cluster. Reads the kubeconfig: call it only where the cluster is
    touched (the run of the target, on whatever machine runs it)."""
    server = None
    if kubeconfig_text is not None:
        server = api_server_of(kubeconfig_text, target.context)
    elif target.kubeconfig is not None:
        server = api_server(target.kubeconfig, target.context)
    key = server or cluster_key(target)
    name = LOCK_PREFIX + slug(key)
    return name if len(name) <= 80 else f"{name[:71]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


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


# Rollout state, for resume


def fleet_dir(runs_dir: Path, fleet_run_id: str) -> Path:
    """Where a fleet run keeps its reports and rollout state."""
    return Path(runs_dir) / fleet_run_id


class RolloutState(BaseModel):
    """A rollout's progress, saved after every target: what completed (here or in the runs it resumed) and why it
    halted."""

    fleet_run_id: str
    resumed_from: str | None = None
    waves: list[list[str]]
    completed: list[str] = []
    results: list[TargetResult] = []
    checks: list[CheckResult] = []
    halted: str | None = None

    def save(self, runs_dir: Path) -> Path:
        """Write `<runs_dir>/<fleet run id>/rollout.json`."""
        path = fleet_dir(runs_dir, self.fleet_run_id) / ROLLOUT_STATE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, runs_dir: Path, fleet_run_id: str) -> RolloutState:
        """The state of an earlier rollout; InputError (field resume_from) when there is none."""
        path = fleet_dir(runs_dir, fleet_run_id) / ROLLOUT_STATE
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            raise InputError("resume_from", f"no readable rollout state at {path}",
                             "give the id of an earlier fleet rollout run (the directory under runs_dir holding "
                             f"{ROLLOUT_STATE})") from None
