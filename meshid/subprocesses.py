"""Command-line tools as subprocesses: argv lists only, a timeout on every call, errors classified, and an end within
`meshid.interrupt`'s bound once the run is stopped."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping

from meshid import interrupt
from meshid.errors import ExternalCallError, ExternalTimeout, matches_transient
from meshid.redact import redact

POLL_S = 0.1  # how often a running tool is checked for a stop request
# After SIGTERM, how long a tool may take to end before SIGKILL: helm install and upgrade cancel on SIGTERM and mark
# their release failed (helm v4 pkg/cmd/install.go and upgrade.go: signal.Notify(os.Interrupt, syscall.SIGTERM)),
# which a later uninstall or rollback can undo; a release killed mid-write would stay pending.
TERMINATE_GRACE_S = 5.0


def run_cli(argv: list[str], what: str, timeout_s: float, env: Mapping[str, str] | None = None) -> str:
    """Run a CLI (helm, minikube, kind, ...): its own timeout, stderr redacted, failures classified transient or not;
    return stdout. A stop request ends it (SIGTERM, then SIGKILL) and raises `Interrupted`."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, env={**os.environ, **(env or {})})
    except FileNotFoundError:
        raise ExternalCallError(what, f"{argv[0]} not found on PATH; install it", transient=False) from None
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if interrupt.requested():
                    _end(proc)
                    interrupt.check()
                if time.monotonic() >= deadline:
                    proc.kill()
                    proc.communicate()
                    raise ExternalTimeout(what, timeout_s) from None
    finally:
        if proc.poll() is None:  # an error in this thread: the tool must not outlive the call
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        interrupt.check()  # the tool got the signal too (a terminal's Ctrl-C, a worker's SIGTERM to the group)
        text = redact(err.strip() or out.strip())[-2000:]
        raise ExternalCallError(what, f"exit {proc.returncode}: {text}", transient=matches_transient(text))
    return out


def _end(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
