"""Stopping runs on SIGINT and SIGTERM: the first signal stops the process's runs, the second abandons their cleanup.

`signals_handled()` installs the handlers (in the main thread; flows that run in other threads share the process's
request). Nothing is raised from a handler: every wait, probe and subprocess of a stage calls `check()` or `wait()`
between its own short timeouts and raises `Interrupted`, so a stage ends within STOP_BOUND_S of the first signal.
Cleanup runs `shielded()`: only the second signal stops it there. A third signal ends the process at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from meshid.errors import MeshidError

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The longest a stage goes on after the first signal: a helm subprocess gets SIGTERM and TERMINATE_GRACE_S to end
# (helm install and upgrade mark their release failed on it), an API wait sees the request between watches of
# WATCH_SLICE_S, a probe between two calls; plus one API request or HTTP call in flight (normally milliseconds).
STOP_BOUND_S = 10.0


class Interrupted(MeshidError):
    """The run was stopped by a signal; never transient."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal_name(self.signum)}"


def signal_name(signum: int) -> str:
    """SIGINT, SIGTERM, ..."""
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """The shell's exit status of a process ended by `signum`: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


class _Request:
    """The process's stop request: the first signal, and whether a second one came."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopped = threading.Event()  # first signal (also set by the second)
        self.abandoned = threading.Event()  # second signal

    def receive(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.stopped.set()
        elif not self.abandoned.is_set():
            self.abandoned.set()
        else:  # a third signal: the operator wants the process gone now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


_request = _Request()
_depth = 0
_local = threading.local()


def _handle(signum: int, _frame: object) -> None:
    _request.receive(signum)


@contextmanager
def signals_handled() -> Iterator[None]:
    """Handle SIGINT and SIGTERM in this block (main thread only; elsewhere the block changes nothing).

    The outermost block starts a fresh request, and when it ends the request stops nothing more; nested blocks (a flow
    inside the CLI's block) keep it, and reinstall the handlers, since Prefect's flow engine installs its own SIGTERM
    handler around a flow run.
    """
    global _request, _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        _request = _Request()
    previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if _depth == 0:  # no run goes on to stop; `received()` still tells which signal came
            _request.stopped.clear()
            _request.abandoned.clear()


@contextmanager
def shielded() -> Iterator[None]:
    """In this thread, in this block, only the second signal stops work (cleanup must outlive the first)."""
    before = getattr(_local, "shielded", False)
    _local.shielded = True
    try:
        yield
    finally:
        _local.shielded = before


def _event() -> threading.Event:
    return _request.abandoned if getattr(_local, "shielded", False) else _request.stopped


def requested() -> bool:
    """Whether work in this thread should stop now."""
    return _event().is_set()


def check() -> None:
    """Raise `Interrupted` when work in this thread should stop."""
    if requested():
        raise Interrupted(_request.signum or signal.SIGTERM)


def wait(seconds: float) -> None:
    """Sleep `seconds`, or less when a stop that applies to this thread comes; then `check()`."""
    _event().wait(max(0.0, seconds))
    check()


def received() -> int | None:
    """The first signal received, if any."""
    return _request.signum


def abandoned() -> bool:
    """Whether a second signal came (cleanup is skipped)."""
    return _request.abandoned.is_set()
