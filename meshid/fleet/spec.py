"""The fleet file: FleetSpec (targets x trust domains and how to run over them), its validation, and loading it."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from meshid.errors import InputError, input_error, pydantic_error
from meshid.fleet.waves import canary_names
from meshid.models import CleanupPolicy, GuideParams, ProviderName, RunMode, Target, TrustDomain, parse_params

_SHARE = re.compile(r"(\d+(?:\.\d+)?)%")
# A Prefect work queue name as meshid accepts it: the API takes almost any text, but a queue is named on worker
# command lines (`prefect worker start -q NAME`) and in URLs, so letters, digits, '.', '_' and '-' only.
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


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
