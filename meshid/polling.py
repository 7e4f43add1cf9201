"""Polling waits, for state no API watch can follow (a command's output in a pod, a sidecar's stats page)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from meshid.errors import ExternalCallError, WaitTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")
Reading = tuple[bool, str, T]  # (done, what was seen, the value to return)


def poll(what: str, read: Callable[[], Reading[T]], timeout_s: float, interval_s: float = 0.25) -> T:
    """Call `read` every `interval_s` until it says done; transient errors are noted (and logged) and polled through. Raise
    WaitTimeout naming `what` and the last reading after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = "nothing yet"
    while True:
        try:
            done, last, value = read()
            if done:
                return value
        except ExternalCallError as exc:
            if not exc.transient:
                raise
            log.debug("waiting for %s: a transient error, polled through: %s", what, exc)
            last = f"{last} (then a transient error: {exc})"
        if time.monotonic() + interval_s > deadline:
            raise WaitTimeout(what, last, timeout_s)
        time.sleep(interval_s)
