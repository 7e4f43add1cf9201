"""Detached helper processes of a sandbox: start with a log file, write and wait for a ready file, stop by process
group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import StartFailed, Stopped

READY_POLL_S = 0.02  # a stat per poll; a ready helper is noticed within 20 ms
STOP_POLL_S = 0.1  # how often a running command is checked for a stop


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start `argv` in its own session with stdout/stderr to `log`; return its pid (= its process group)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    return proc.pid


def write_atomically(path: Path, text: str) -> None:
    """Write `path` through a temporary file and a rename, so a reader polling for it never sees it half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def wait_ready(ready_file: Path, pid: int, what: str, log: Path, timeout_s: float,
               stop: Callable[[], bool] = lambda: False, accept: Callable[[str], bool] = lambda text: True) -> str:
    """Wait until `ready_file` exists with a text `accept` takes, and return the text; fail early if the process
    died, or `stop` turned true."""
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        if ready_file.exists():
            seen = ready_file.read_text().strip()
            if accept(seen):
                return seen
        if not alive(pid):
            raise StartFailed(f"{what} exited before it was ready; last lines of {log}:\n{tail(log)}")
        if stop():
            raise Stopped(f"stopped on request while waiting for {what}")
        time.sleep(READY_POLL_S)
    said = "" if seen is None else f", which says {seen!r}"
    raise StartFailed(f"{what} was not ready after {timeout_s:.0f} s (waited for {ready_file}{said}); "
                      f"last lines of {log}:\n{tail(log)}")


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def stop(pid: int, group: bool = True, timeout_s: float = 10.0) -> None:
    """SIGTERM the process (its whole group when `group`), then SIGKILL if it still runs after `timeout_s`."""
    send = os.killpg if group else os.kill
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            send(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        if not alive(pid):
            return


def using(path: Path) -> list[int]:
    """Pids of processes whose command line mentions `path` (what is left of a sandbox)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def tail(log: Path, lines: int = 20) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({log} does not exist)"
