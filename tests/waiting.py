"""`wait_for`: the tests' one poll of something that comes in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, context: Callable[[], str] = str,
             every_s: float = 0.5) -> Any:
    """Poll `probe()` every `every_s` until it returns something truthy; fail naming `what`, and `context()` (e.g.
    worker logs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every_s)
    pytest.fail(f"waited {timeout_s} s for {what}\n{context()}")
