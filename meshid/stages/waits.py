"""A wait whose outcome is a catalogue check: met -> passed check, timed out -> failed check with what was seen."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from meshid.checks import CheckSpec
from meshid.errors import WaitTimeout
from meshid.stages.output import StageOutput

T = TypeVar("T")
Explanation = Callable[[], tuple[CheckSpec, str] | None]  # a more specific (check, message) for a wait that gave up


def checked_wait(out: StageOutput, check: CheckSpec, wait: Callable[[], T], success: Callable[[T], str],
                 explain: Explanation | None = None) -> T | None:
    """Run `wait`; record `check` passed with `success(result)`, or failed with the wait's own message, unless
    `explain` names a more specific cause (its check fails instead)."""
    try:
        result = wait()
    except WaitTimeout as exc:
        cause = explain() if explain else None
        if cause:
            out.check(cause[0], False, f"{cause[1]} (gave up after {exc.timeout_s:g}s)")
        else:
            out.check(check, False, str(exc))
        return None
    out.check(check, True, success(result))
    return result
