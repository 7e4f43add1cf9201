"""An exclusive lock on a file (flock(2)) between meshid processes, waited for with a bound and a stop check."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshid import interrupt
from meshid.errors import ExternalCallError

POLL_S = 0.05


@contextmanager
def held(path: Path, timeout_s: float, holder: str) -> Iterator[None]:
    """Hold the lock on `path` in this block; wait at most `timeout_s` for `holder` (what else takes it, in words)
    to let it go. The kernel releases it when the process ends, however it ends."""
    deadline = time.monotonic() + timeout_s
    with path.open("a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ExternalCallError(f"lock {path}", f"{holder} held it for more than {timeout_s:g} s") from None
                interrupt.wait(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
