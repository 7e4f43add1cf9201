"""A wait a catalogue check stands on: met -> what it found, for the check's evaluator; timed out -> the check failed
with the wait's own message (what was last seen)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from meshid.checks import CheckSpec
from meshid.errors import WaitTimeout
from meshid.polling import poll
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


def waited_check(out: StageOutput, check: CheckSpec, wait: Callable[[], T], *facts: Any,
                 explain: Explanation | None = None) -> T | None:
    """`checked_wait`, and once the wait is met, `check` recorded as its evaluator judges what the wait found (and
    `facts`, the evaluator's arguments after it)."""
    found = checked_wait(out, check, wait, explain)
    if found is not None:
        out.check(check, found, *facts)
    return found


def polled_check(out: StageOutput, check: CheckSpec, what: str, observe: Callable[[], tuple], timeout_s: float) -> bool:
    """Poll until `check`'s evaluator passes on the facts `observe` reads (`what` names it), up to `timeout_s`; record
    its passing result, or the check failed with what was seen last. Whether it passed."""

    def reading() -> tuple[bool, str, CheckResult]:
        result = check.result(*observe())
        return not result.failed, result.message, result

    found = checked_wait(out, check, lambda: poll(what, reading, timeout_s))
    if found is not None:
        out.add(found)
    return found is not None
