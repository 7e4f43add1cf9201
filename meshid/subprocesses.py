"""Command-line tools as subprocesses: argv lists only, a timeout on every call, errors classified."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from meshid.errors import ExternalCallError, ExternalTimeout, matches_transient
from meshid.redact import redact


def run_cli(argv: list[str], what: str, timeout_s: float, env: Mapping[str, str] | None = None) -> str:
    """Run a CLI (helm, minikube, kind, ...): its own timeout, stderr redacted, failures classified transient or not; return stdout."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise ExternalTimeout(what, timeout_s) from None
    except FileNotFoundError:
        raise ExternalCallError(what, f"{argv[0]} not found on PATH; install it", transient=False) from None
    if done.returncode != 0:
        err = redact(done.stderr.strip() or done.stdout.strip())[-2000:]
        raise ExternalCallError(what, f"exit {done.returncode}: {err}", transient=matches_transient(err))
    return done.stdout
