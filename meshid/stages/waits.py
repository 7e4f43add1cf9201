"""A wait a catalogue check stands on: met -> what it found, for the check's evaluator; timed out -> the check failed
with the wait's own message (what was last seen)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from meshid.checks import CheckSpec
from meshid.errors import WaitTimeout
from meshid.results import CheckResult
from meshid.stages.output import StageOutput

T = TypeVar("T")
Explanation = Callable[[float], CheckResult | None]  # a more specific failed check for a wait that gave up after s


def checked_wait(out: StageOutput, check: CheckSpec, wait: Callable[[], T],
                 explain: Explanation | None = None) -> T | None:
    """Run `wait` and return what it found; if it gives up, record `check` failed with the wait's message, unless
    `explain` names a more specific cause (its failed check instead), and return None."""
    try:
        return wait()
    except WaitTimeout as exc:
        out.add((explain(exc.timeout_s) if explain else None) or check.failed(str(exc)))
        return None


def reading(result: CheckResult) -> tuple[bool, str, CheckResult]:
    """A check's result as a `polling.poll` reading: done when it passed, its message as what was seen."""
    return not result.failed, result.message, result
