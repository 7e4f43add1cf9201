"""Nightly trends over fleet reports: pass rate and duration per stage, flaky stages, failure streak, diff to green.

Pure: the input is a list of `Night`s (a fleet JSON report with the run that produced it), oldest first and the
current run last. A report is `{"outcome", "results": [{"target", "trust_domain", "outcome", "failed_stage",
"duration_s", "stages": [{"name", "outcome", "duration_s", "flaky"}, ...]}]}`; a result without `stages` counts
only its `failed_stage` as failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshid.reports import markdown_table

ABSENT = "absent"


@dataclass(frozen=True)
class Night:
    """One earlier (or the current) fleet run: its flow run name, scheduled start (ISO 8601) and report."""

    run: str
    when: str
    report: Mapping[str, Any]

    @property
    def green(self) -> bool:
        return self.report.get("outcome") == "passed"


@dataclass(frozen=True)
class StageTrend:
    """One stage over every target x trust domain of every night; skipped stages are not counted."""

    name: str
    passed: int
    failed: int
    flaky: int
    mean_s: float
    max_s: float

    @property
    def pass_rate(self) -> float:
        return self.passed / (self.passed + self.failed) if self.passed + self.failed else 0.0


@dataclass(frozen=True)
class Change:
    """A stage of one target x trust domain whose outcome differs from the last green night."""

    target: str
    trust_domain: str
    stage: str
    green: str
    now: str


@dataclass(frozen=True)
class Trend:
    """The trend of `nights` up to and including the current one."""

    nights: int
    green_nights: int
    stages: list[StageTrend]
    streak_start: Night | None
    streak: int
    last_green: Night | None
    changes: list[Change]


def _stages(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The result's stages; without them, its failed stage alone (duration unknown)."""
    if "stages" in result:
        return result["stages"]
    failed = result.get("failed_stage")
    return [{"name": failed, "outcome": "failed", "duration_s": None, "flaky": False}] if failed else []


def _cells(report: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(target, trust domain, stage) of every result of a report."""
    for result in report.get("results", []):
        for stage in _stages(result):
            yield str(result.get("target")), str(result.get("trust_domain")), stage


def stage_trends(nights: Sequence[Night]) -> list[StageTrend]:
    """Pass rate, flaky count and duration per stage, in the order the stages first appear."""
    seen: dict[str, list[Mapping[str, Any]]] = {}
    for night in nights:
        for _, _, stage in _cells(night.report):
            if stage["outcome"] in ("passed", "failed"):
                seen.setdefault(stage["name"], []).append(stage)
    out = []
    for name, runs in seen.items():
        durations = [float(s["duration_s"]) for s in runs if s.get("duration_s") is not None]
        out.append(StageTrend(
            name=name, passed=sum(s["outcome"] == "passed" for s in runs),
            failed=sum(s["outcome"] == "failed" for s in runs), flaky=sum(bool(s.get("flaky")) for s in runs),
            mean_s=sum(durations) / len(durations) if durations else 0.0, max_s=max(durations, default=0.0)))
    return out


def diff(green: Night, now: Night) -> list[Change]:
    """Stages (per target x trust domain) whose outcome differs between `green` and `now`; missing ones are absent."""
    before = {(t, td, s["name"]): s["outcome"] for t, td, s in _cells(green.report)}
    after = {(t, td, s["name"]): s["outcome"] for t, td, s in _cells(now.report)}
    keys = list(before) + [k for k in after if k not in before]
    return [Change(*key, before.get(key, ABSENT), after.get(key, ABSENT))
            for key in keys if before.get(key, ABSENT) != after.get(key, ABSENT)]


def compute(nights: Sequence[Night]) -> Trend:
    """The trend of `nights` (oldest first, the current run last, at least one)."""
    current = nights[-1]
    streak = 0
    for night in reversed(nights):
        if night.green:
            break
        streak += 1
    last_green = next((n for n in reversed(nights[:-1]) if n.green), None)
    return Trend(nights=len(nights), green_nights=sum(n.green for n in nights), stages=stage_trends(nights),
                 streak_start=nights[-streak] if streak else None, streak=streak, last_green=last_green,
                 changes=diff(last_green, current) if last_green else [])


def rows(trend: Trend) -> list[dict[str, Any]]:
    """One row per stage for a table artifact."""
    return [{"stage": s.name, "pass_rate": round(s.pass_rate, 3), "passed": s.passed, "failed": s.failed,
             "flaky": s.flaky, "mean_s": round(s.mean_s, 1), "max_s": round(s.max_s, 1)} for s in trend.stages]


def markdown(trend: Trend) -> str:
    """The trend at a glance: the failure streak, per-stage figures, flaky stages and the diff to the last green."""
    if trend.streak_start:
        head = (f"**failing for {trend.streak} night(s)**, since `{trend.streak_start.run}` "
                f"({trend.streak_start.when})")
    else:
        head = "**green**"
    parts = [f"## Nightly trend: {head}",
             f"{trend.green_nights} of {trend.nights} night(s) green",
             markdown_table(["stage", "pass rate", "passed", "failed", "flaky", "mean s", "max s"],
                            [[s.name, f"{100 * s.pass_rate:.0f}%", s.passed, s.failed, s.flaky, f"{s.mean_s:.1f}",
                              f"{s.max_s:.1f}"] for s in trend.stages])]
    flaky = [f"`{s.name}` ({s.flaky})" for s in trend.stages if s.flaky]
    parts.append("flaky stages (passed only on retry): " + (", ".join(flaky) if flaky else "none"))
    if trend.last_green is None:
        parts.append("no earlier green night to compare with")
    elif not trend.changes:
        parts.append(f"no stage changed since the last green night `{trend.last_green.run}` ({trend.last_green.when})")
    else:
        parts += [f"changes since the last green night `{trend.last_green.run}` ({trend.last_green.when}):",
                  markdown_table(["target", "trust domain", "stage", "green", "now"],
                                 [[c.target, c.trust_domain, c.stage, c.green, c.now] for c in trend.changes])]
    return "\n\n".join(parts) + "\n"
