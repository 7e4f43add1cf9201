"""`python -m flows.engine`: the process a Prefect worker starts for one run of meshid's deployments.

It is Prefect's own engine (`python -m prefect.engine`), run once Prefect and meshid's flows are imported with the
garbage collector paused (`meshid.collector`). prefect.yaml names it as the work pool's `command`: with a command of
its own, Prefect's process worker starts this one process per flow run; without one it starts a workspace supervisor,
which imports Prefect as well before it starts the engine (prefect/workers/process.py).

That import is most of a run process's CPU, so by default this command is a small client of a warm engine
(`flows/engine_server.py`): a server that made the import once and forks a child per run, which takes this process's
environment, directory, arguments and standard streams and runs the engine. This process stays what the worker
watches: it forwards the signals it gets to the child's process group and ends as the child ended (its exit code, or
killed by the same signal). It imports nothing but the standard library before it knows whether a server answers.
The first run finds no server: it starts one in the background and waits for it, as do the runs that find one
starting (its import costs what their own would, so the runs a worker starts at once pay it once). A run runs here
with MESHID_WARM_ENGINE=0, when the server cannot take the run (it is stale after a code or package change, and
exits once its runs ended), or does not listen within START_WAIT_S. The server's socket, log and pid file are
`<MESHID_HOME>/engine/<key>.*`, one server per interpreter, project directory, import path, network namespace and
environment read at import (`server_key`); it exits after MESHID_WARM_ENGINE_IDLE_S (default 900) without a run;
`python -m flows.engine_server --stop` stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the environment that libraries read while they are imported, not when they run: a server serves only runs whose
# values are the ones it imported with (Python's own start-up, locale, and module-level reads in the imported packages)
IMPORT_TIME_ENV = ("PYTHON", "LC_", "LANG", "TZ", "SSL_CERT_FILE", "KUBECONFIG", "WEBSOCKETS_", "FSSPEC_", "PENDULUM_")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
HEADER = struct.Struct("!I")
START_WAIT_S = 60.0  # for a server that starts: its import, on a busy machine
START_POLL_S = 0.05
MAX_SOCKET_PATH = 100  # sun_path holds 107 bytes: under a longer MESHID_HOME, every run runs in its own process


def run_here() -> None:
    """Import with the collector paused, then run Prefect's engine as `python -m prefect.engine` would."""
    prepare()
    import runpy

    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def prepare() -> None:
    """What every run needs imported, imported with the garbage collector paused (and then frozen)."""
    from meshid.collector import collector_paused

    with collector_paused():
        import prefect.engine  # noqa: F401
        import prefect.flow_engine  # noqa: F401
        # what every deployment's flow imports; the entrypoint's own module Prefect imports (a warm engine imports
        # them all: flows/engine_warmup.py)
        import flows.guide  # noqa: F401


# The warm engine's files and its wire format, shared with flows/engine_server.py


def engine_dir() -> str:
    """`<MESHID_HOME>/engine` (meshid's home, as meshid.settings reads it), created private."""
    from meshid import DEFAULT_HOME, HOME_ENV

    home = os.path.expanduser(os.environ.get(HOME_ENV) or DEFAULT_HOME)
    path = os.path.join(home, "engine")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def netns() -> str:
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return ""


def server_key() -> str:
    """What a server must share with a run to serve it: this interpreter with its options, the project directory, the
    import path (but its first entry, the directory the process started in, which a worker makes new for every run:
    the child takes its client's), the network namespace (a run reaches its worker and the API on 127.0.0.1) and
    IMPORT_TIME_ENV."""
    import hashlib

    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(IMPORT_TIME_ENV))
    text = json.dumps([sys.executable, _interpreter_options(), ROOT, sys.path[1:], netns(), env])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _interpreter_options() -> list[str]:
    """The options this interpreter was started with (`python -X ... -m ...`): the server starts with the same."""
    argv = sys.orig_argv
    return argv[1:argv.index("-m")] if "-m" in argv else argv[1:]


class Channel:
    """Length-prefixed JSON messages over a unix socket, the first one able to carry file descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, message: dict, fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        data = HEADER.pack(len(data)) + data
        sent = socket.send_fds(self.sock, [data], fds) if fds else 0
        self.sock.sendall(data[sent:])

    def receive(self, max_fds: int = 0) -> tuple[dict, list[int]] | None:
        """The next message and the fds that came with it; None when the connection ends first."""
        fds: list[int] = []
        while len(self.buffer) < HEADER.size or len(self.buffer) < HEADER.size + HEADER.unpack_from(self.buffer)[0]:
            if max_fds and not fds:
                more, fds, _, _ = socket.recv_fds(self.sock, 65536, max_fds)
            else:
                more = self.sock.recv(65536)
            if not more:
                for fd in fds:
                    os.close(fd)
                return None
            self.buffer += more
        size = HEADER.size + HEADER.unpack_from(self.buffer)[0]
        message, self.buffer = json.loads(self.buffer[HEADER.size:size]), self.buffer[size:]
        return message, fds


# The client


class _Forwarder:
    """Signals to the child's process group; those that come before its pid is known, once it is."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        self.before = {sig: signal.signal(sig, self._handle) for sig in FORWARDED}

    def _handle(self, sig: int, _frame: object) -> None:
        if self.pid is None:
            self.pending.append(sig)
        else:
            _kill_group(self.pid, sig)

    def started(self, pid: int) -> None:
        self.pid = pid
        while self.pending:
            _kill_group(pid, self.pending.pop(0))

    def undo(self) -> None:
        """This process's own handlers back, and the signals that came meanwhile delivered to it."""
        for sig, handler in self.before.items():
            signal.signal(sig, handler)
        while self.pending:
            os.kill(os.getpid(), self.pending.pop(0))


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _ignored_signals() -> list[int]:
    """Signals this process inherited ignored: a process started in its place would have them ignored too."""
    return [int(sig) for sig in signal.valid_signals() if sig not in (signal.SIGKILL, signal.SIGSTOP)
            and signal.getsignal(sig) == signal.SIG_IGN]


def _open_fds() -> list[int]:
    found = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            continue
        found.append(fd)
    return found


def _starting(path: str, may_start: bool) -> bool:
    """Whether a server for `path` is starting: one this call starts now (`may_start`, and no other process holds the
    start lock), or one whose start lock is held while it has written no pid file yet (a server writes it once it
    listens, or once it knows it will not serve)."""
    import fcntl

    base = path.removesuffix(".sock")
    try:
        lock = os.open(base + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: a server starts, listens, or refused to serve
        os.close(lock)
        return not os.path.exists(base + ".pid")
    try:
        if not may_start:  # the server this call started is gone before it listened
            return False
        os.set_inheritable(lock, True)  # the server holds the lock (this open file) as long as it listens
        os.posix_spawn(sys.executable, [sys.executable, *_interpreter_options(), "-m", "flows.engine_server",
                                        "--socket", path, "--lock-fd", str(lock)], os.environ, setsid=True,
                       file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                     (os.POSIX_SPAWN_OPEN, 1, base + ".log", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                      0o600),
                                     (os.POSIX_SPAWN_DUP2, 1, 2)])
        return True
    except OSError:
        return False
    finally:
        os.close(lock)


def _through_server(channel: Channel, key: str, forwarder: _Forwarder) -> bool:
    """Hand this run to the server; False when it answers it will not take it (this process runs it), else it
    never returns. OSError when the server went away before it took the run."""
    request = {"key": key, "env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv, "path0": sys.path[0],
               "fds": _open_fds(), "umask": _umask(), "ignored": _ignored_signals()}
    channel.send(request, request["fds"])
    answer = channel.receive()
    if answer is None:
        raise ConnectionResetError("the warm engine closed the connection")
    if "pid" not in answer[0]:  # stale or refused
        return False
    pid = answer[0]["pid"]
    forwarder.started(pid)
    done = channel.receive()
    if done is None:  # the server ended before the child did: wait for the child, whose status is lost
        _wait_for_exit(pid)
        print(f"flows.engine: the warm engine ended before run process {pid} did; its exit status is unknown",
              file=sys.stderr)
        sys.exit(1)
    _end_as(done[0]["status"])
    return True


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _wait_for_exit(pid: int) -> None:
    import select

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    select.select([pidfd], [], [])
    os.close(pidfd)


def _end_as(status: int) -> None:
    """End this process as the child ended: its exit code, or the signal that killed it."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: no handler to reset
            pass
        sys.stdout.flush()
        os.kill(os.getpid(), sig)
        sys.exit(128 + sig)  # a signal whose default is to be ignored
    sys.exit(os.waitstatus_to_exitcode(status))


def main() -> None:
    if os.environ.get("MESHID_WARM_ENGINE") == "0":
        run_here()
        return
    forwarder = _Forwarder()
    if not _served(forwarder):
        forwarder.undo()
        run_here()


def _served(forwarder: _Forwarder) -> bool:
    """Whether the warm engine took this run (then this never returns). With no server, start one and wait for it,
    as the runs that find one starting do (START_WAIT_S at most): its import costs what this process's own would,
    and the runs a worker starts together then pay it once."""
    import time

    key = server_key()
    try:
        path = os.path.join(engine_dir(), f"{key}.sock")
    except OSError:
        return False
    if len(path) > MAX_SOCKET_PATH:
        return False
    deadline = None
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(path)
                return _through_server(Channel(sock), key, forwarder)
            except OSError:  # no server yet, or it went away before it took the run
                pass
        if not _starting(path, may_start=deadline is None) or (deadline and time.monotonic() >= deadline):
            return False
        deadline = deadline or time.monotonic() + START_WAIT_S
        time.sleep(START_POLL_S)


if __name__ == "__main__":
    main()
