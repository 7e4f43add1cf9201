"""A wait whose outcome is a catalogue check: met -> passed check, timed out -> failed check with what was seen."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from meshid.errors import WaitTimeout
from meshid.stages.output import StageOutput

T = TypeVar("T")


def checked_wait(out: StageOutput, code: str, wait: Callable[[], T], success: Callable[[T], str]) -> T | None:
    """Run `wait`; record `code` passed with `success(result)`, or failed with the wait's own message."""
    try:
        result = wait()
    except WaitTimeout as exc:
        out.check(code, False, str(exc))
        return None
    out.check(code, True, success(result))
    return result
