"""Command-line tools as subprocesses: argv lists only, a timeout on every call, errors classified, and an end within
`meshid.interrupt`'s bound once the run is stopped.

A tool that failed says why only in its error text, so that text decides whether the failure is transient
(`transient_output`): the tools are Go programs (helm, minikube, kind, docker), and the patterns are the Go and
Kubernetes texts of a peer that is not up, restarting or throttling.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping

from meshid import interrupt
from meshid.errors import ExternalCallError, ExternalTimeout
from meshid.redact import redact

POLL_S = 0.1  # how often a running tool is checked for a stop request
# After SIGTERM, how long a tool may take to end before SIGKILL: helm install and upgrade cancel on SIGTERM and mark
# their release failed (helm v4 pkg/cmd/install.go and upgrade.go: signal.Notify(os.Interrupt, syscall.SIGTERM)),
# which a later uninstall or rollback can undo; a release killed mid-write would stay pending.
TERMINATE_GRACE_S = 5.0

# Error text that means "try again": each pattern names where it comes from.
TRANSIENT_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"connection refused",  # Go net dial: API server, webhook or port-forward not up yet
        r"connection reset by peer",  # ECONNRESET: peer restarted mid-request
        r"i/o timeout",  # Go net package dial/read deadline
        r"TLS handshake timeout",  # Go net/http transport
        r"the server is currently unable to handle the request",  # kube-apiserver 503 ServiceUnavailable
        r"etcdserver: request timed out",  # etcd, relayed by kube-apiserver
        r"context deadline exceeded",  # Go context timeout (helm, admission webhook calls)
        r"too many requests",  # HTTP 429 / API Priority and Fairness throttling
        r"no endpoints available for service",  # kube-apiserver proxy: webhook Service has no ready pods yet
        r"unexpected EOF",  # Go io.ErrUnexpectedEOF: API server connection dropped (restart)
        r"http2: server sent GOAWAY",  # Go http2: API server shutting down a connection
        r"failed calling webhook",  # kube-apiserver: an admission webhook is not up yet (SPIRE's fails closed)
        # helm 4's hook watcher when the TTL controller deleted a finished hook Job first (Kong Mesh's hook Jobs set
        # ttlSecondsAfterFinished: 0); helm 3 counted that as done (helm/helm PR #32586), a new attempt usually is
        r"resource Job/\S+ not ready\. status: NotFound",
    )
)


def transient_output(text: str) -> bool:
    """Whether a failed tool's error text says "try again" (one of `TRANSIENT_PATTERNS`)."""
    return any(p.search(text) for p in TRANSIENT_PATTERNS)


def command_failed(what: str, exit_code: int, output: str) -> ExternalCallError:
    """A tool that exited non-zero as an `ExternalCallError`: its redacted error text (the last 2000 characters),
    transient when that text says so."""
    text = redact(output.strip())[-2000:]
    return ExternalCallError(what, f"exit {exit_code}: {text}", transient=transient_output(text))


def run_cli(argv: list[str], what: str, timeout_s: float, env: Mapping[str, str] | None = None) -> str:
    """Run a CLI (helm, minikube, kind, ...): its own timeout, stderr redacted, failures classified transient or not;
    return stdout. A stop request ends it (SIGTERM, then SIGKILL) and raises `Interrupted`."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, env={**os.environ, **(env or {})})
    except FileNotFoundError as exc:
        raise ExternalCallError(what, f"{argv[0]} not found on PATH; install it", transient=False) from exc
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
        raise command_failed(what, proc.returncode, err.strip() or out)
    return out


def _end(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
