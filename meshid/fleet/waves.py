"""A rollout's waves: the canary, then the batches; how many failures a wave may have, and its check (MID080)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from meshid import checks
from meshid.checks import Judgement
from meshid.results import Outcome

if TYPE_CHECKING:
    from meshid.fleet.results import TargetResult
    from meshid.fleet.spec import FleetSpec, FleetTarget

CANARY_LABEL, CANARY_VALUE = "wave", "canary"


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


@checks.evaluates(checks.MID080)
def within_threshold(wave: int, results: Sequence[TargetResult], threshold: int | str) -> Judgement:
    """MID080 for one finished wave: its failures within the threshold."""
    failed = [r.target for r in results if r.outcome is Outcome.FAILED]
    allowed = allowed_failures(threshold, len(results))
    name = "canary" if wave == 0 else f"wave {wave}"
    detail = f" ({', '.join(failed)})" if failed else ""
    return len(failed) <= allowed, (f"{name}: {len(failed)} of {len(results)} failed{detail}, threshold {threshold} "
                                    f"allows {allowed}")
