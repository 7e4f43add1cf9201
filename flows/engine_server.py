"""The warm engine behind `python -m flows.engine` (read its docstring first): one server per `engine.server_key`.

`python -m flows.engine_server --socket PATH` imports what a run imports (`engine.prepare`, then
`engine_warmup.warm_up`) once, then listens on PATH, a unix socket only its own user may use. Per run a client hands
it, it forks a child that becomes that run's process: a session of its own, the client's standard streams,
environment, directory, arguments and umask, fresh signal dispositions, Prefect's settings and logging set up again
from that environment, then Prefect's engine as `python -m prefect.engine` runs it; the child ends as that
interpreter would (exit code, traceback, atexit). The server tells the client the child's pid and later its wait
status; a client that goes away first (SIGKILL) takes its child's process group with it. One thread, one selector
loop: forking a process with threads is unsafe, so a server whose imports started a thread does not serve.

A server stops listening (unlinks its socket, releases its start lock, and exits once the runs it started ended)
when a module file it loaded changed or vanished (it answers that run "stale", which then runs in its client: a
`git pull` or an upgrade never runs old code), on SIGTERM, or after MESHID_WARM_ENGINE_IDLE_S seconds (default 900)
without a run. `python -m flows.engine_server --stop` stops this checkout's servers in this network namespace;
`deployments.stack down` calls it.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flows import engine
from flows.engine_warmup import warm_up
from meshid.collector import collector_paused

if TYPE_CHECKING:
    from meshid.runrecord import Writer

IDLE_S = float(os.environ.get("MESHID_WARM_ENGINE_IDLE_S", 900))
REQUEST_TIMEOUT_S = 5.0  # a client sends its request as soon as it connected
STOP_TIMEOUT_S = 10.0
PEERCRED = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


def log(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} engine server {os.getpid()}: {line}", file=sys.stderr, flush=True)


@dataclass
class Job:
    """A run handed to a child: the client's request, the standard streams it sent, and the pipe that says go."""

    request: dict
    fds: list[int]
    go: int


def _module_files() -> dict[str, tuple[int, int]]:
    """Every loaded module's file with its modification time and size."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            try:
                found = os.stat(path)
            except OSError:
                continue
            files[path] = (found.st_mtime_ns, found.st_size)
    return files


def _changed(files: dict[str, tuple[int, int]]) -> str | None:
    """What changed among `files` since they were loaded, if anything."""
    for path, seen in files.items():
        try:
            found = os.stat(path)
        except OSError:
            return f"{path} is gone"
        if (found.st_mtime_ns, found.st_size) != seen:
            return f"{path} changed"
    return None


class Server:
    """The listening socket, the connections of the clients whose children run, and the loop that serves them."""

    def __init__(self, path: str, lock_fd: int, key: str) -> None:
        self.path, self.base, self.lock_fd, self.key = path, path.removesuffix(".sock"), lock_fd, key
        self.files = _module_files()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, _note)
        signal.set_wakeup_fd(self.wake_w)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.unlink(path)  # left by a server that died: this one holds the start lock
        except FileNotFoundError:
            pass
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        self.listening = True
        self.children: dict[int, socket.socket | None] = {}  # pid: its client's connection, None once it is gone
        self.last_activity = time.monotonic()
        _write_pid_file(self.base)
        log(f"listening on {path} ({len(self.files)} module files watched)")

    def serve(self) -> Job | None:
        """Serve until stopped and the last child ended (None), or return the Job in a child."""
        while self.listening or self.children:
            idle_left = IDLE_S - (time.monotonic() - self.last_activity)
            if self.listening and not self.children and idle_left <= 0:
                self.stop_listening(f"idle for {IDLE_S:g} s")
                continue
            timeout = idle_left if self.listening and not self.children else None
            for key, _ in self.selector.select(timeout):
                if key.data == "listener":
                    job = self._accept()
                    if job is not None:
                        return job
                elif key.data == "signal":
                    self._signals()
                else:
                    self._client_event(key.fileobj)
        log("exiting")
        return None

    def stop_listening(self, why: str) -> None:
        """No more runs: the socket, pid file and start lock released, so the next client starts a new server."""
        if not self.listening:
            return
        self.listening = False
        self.selector.unregister(self.listener)
        self.listener.close()
        for path in (self.path, self.base + ".pid"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.close(self.lock_fd)
        log(f"stopped listening: {why}; {len(self.children)} run(s) still going")

    def _accept(self) -> Job | None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        self.last_activity = time.monotonic()
        conn.settimeout(REQUEST_TIMEOUT_S)
        channel = engine.Channel(conn)
        try:
            peer, uid, _ = PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
            if uid != os.getuid():
                log(f"refused client pid {peer}: uid {uid}")
                channel.send({"refused": "another user"})
                conn.close()
                return None
            received = channel.receive(max_fds=3)
            if received is None:
                conn.close()
                return None
            request, fds = received
            answer = self._refusal(request, fds)
            if answer is not None:
                for fd in fds:
                    os.close(fd)
                channel.send(answer)
                conn.close()
                log(f"answered client pid {peer}: {answer}")
                if "stale" in answer:
                    self.stop_listening(f"stale: {answer['stale']}")
                return None
        except OSError as exc:
            log(f"dropped a client: {exc!r}")
            conn.close()
            return None
        return self._fork(conn, channel, request, fds, peer)

    def _refusal(self, request: dict, fds: list[int]) -> dict | None:
        """Why this server does not run `request`, as the answer to its client; None when it does."""
        if request.get("key") != self.key:
            return {"refused": f"key {request.get('key')}, not {self.key}"}
        if len(fds) != len(request["fds"]):
            return {"refused": f"{len(fds)} file descriptors came, not {len(request['fds'])}"}
        stale = _changed(self.files)
        return None if stale is None else {"stale": stale}

    def _fork(self, conn: socket.socket, channel: engine.Channel, request: dict, fds: list[int],
              peer: int) -> Job | None:
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            self._leave()
            return Job(request, fds, go_r)
        os.close(go_r)
        for fd in fds:
            os.close(fd)
        try:
            channel.send({"pid": pid})
        except OSError as exc:  # the client is gone: the child ends without running (no go)
            log(f"client pid {peer} gone before its run started: {exc!r}")
            conn.close()
            conn = None
        else:
            os.write(go_w, b"g")
            self.selector.register(conn, selectors.EVENT_READ, "client")
            log(f"run process {pid} for client pid {peer}")
        os.close(go_w)
        self.children[pid] = conn
        return None

    def _leave(self) -> None:
        """In a child: close everything of the server's."""
        signal.set_wakeup_fd(-1)
        for conn in self.children.values():
            if conn is not None:
                conn.close()
        self.selector.close()
        self.listener.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        if self.listening:
            os.close(self.lock_fd)

    def _signals(self) -> None:
        try:
            signums = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        if signal.SIGTERM in signums:
            self.stop_listening("SIGTERM")
        if signal.SIGCHLD in signums:
            self._reap()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.last_activity = time.monotonic()
            conn = self.children.pop(pid, None)
            if conn is not None:
                self.selector.unregister(conn)
                try:
                    engine.Channel(conn).send({"status": status})
                except OSError:
                    pass
                conn.close()

    def _client_event(self, conn: socket.socket) -> None:
        """A client's connection is readable: it ended (its process is gone), so its child's process group goes."""
        try:
            if conn.recv(4096):
                return
        except OSError:
            pass
        [pid] = [pid for pid, each in self.children.items() if each is conn]
        log(f"the client of run process {pid} went away: killing its process group")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.selector.unregister(conn)
        conn.close()
        self.children[pid] = None


def _write_pid_file(base: str) -> None:
    """`<key>.pid`: this server (pid and start time), its checkout and network namespace, for `running_servers`."""
    from meshid.runrecord import Writer

    partial = f"{base}.pid.{os.getpid()}"
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        json.dump({**Writer.current().model_dump(), "root": engine.ROOT, "netns": engine.netns()}, file)
    os.replace(partial, base + ".pid")


def _note(_sig: int, _frame: object) -> None:
    """The signal is handled in the loop, through the wakeup fd."""


# The child


def become_run(job: Job) -> None:
    """In the child: wait for the server's go, take the client's process state, and run Prefect's engine."""
    request = job.request
    os.setsid()
    go = os.read(job.go, 1)
    os.close(job.go)
    if not go:  # the server could not tell the client this child's pid: the client runs the run itself
        os._exit(0)
    for target, fd in zip(request["fds"], job.fds):
        os.dup2(fd, target)
        os.close(fd)
    for target in {0, 1, 2} - set(request["fds"]):
        os.close(target)
    for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
        # as the interpreter sets them up: what its starter ignored stays ignored, SIGINT raises KeyboardInterrupt
        fresh = signal.SIG_IGN if sig in request["ignored"] else (
            signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        try:
            signal.signal(sig, fresh)
        except (OSError, ValueError):  # the C library's own real-time signals
            pass
    _drop_extra_handlers()
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    os.umask(request["umask"])
    os.chdir(request["cwd"])
    sys.argv = request["argv"]
    sys.path[0] = request["path0"]
    if sys.stdout is not None:  # line-buffered on a terminal, as the interpreter opens it
        sys.stdout.reconfigure(line_buffering=sys.stdout.isatty() and not sys.flags.unbuffered)
    _prefect_from_env()
    import runpy

    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def _drop_extra_handlers() -> None:
    """Prefect's handlers off the loggers the server's PREFECT_LOGGING_EXTRA_LOGGERS named: the run's own setting
    decides (`setup_logging` adds them again to the loggers it names, and does not remove them from others)."""
    import logging

    from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

    handlers = logging.getLogger("prefect.extra").handlers
    for name in PREFECT_LOGGING_EXTRA_LOGGERS.value():
        for handler in handlers:
            logging.getLogger(name).removeHandler(handler)


def _prefect_from_env() -> None:
    """What `import prefect` set up from the environment, set up again from the run's: settings, plugins, logging."""
    import prefect
    from prefect.context import get_settings_context, refresh_global_settings_context
    from prefect.logging import configuration

    refresh_global_settings_context()
    prefect._initialize_plugins()  # noqa: SLF001 (a no-op unless the settings enable plugins)
    configuration.PROCESS_LOGGING_CONFIG.clear()  # a first set-up, not an incremental one
    configuration.setup_logging()
    prefect.logging.get_logger("profiles").debug(f"Using profile {get_settings_context().profile.name!r}")


# Stopping


def running_servers(root: str = engine.ROOT) -> list[Writer]:
    """The servers of checkout `root` in this network namespace that listen (or refused to), by their pid files."""
    from meshid.runrecord import Writer

    folder, found = engine.engine_dir(), []
    for name in os.listdir(folder):
        if name.endswith(".pid"):
            try:
                with open(os.path.join(folder, name)) as file:
                    record = json.load(file)
            except (OSError, ValueError):
                continue
            server = Writer(pid=record["pid"], start_ticks=record["start_ticks"])
            if record.get("root") == root and record.get("netns") == engine.netns() and server.alive():
                found.append(server)
    return found


def stop_servers(root: str = engine.ROOT) -> list[int]:
    """SIGTERM the servers of checkout `root` in this network namespace and wait for them (a server whose runs still
    go ends with them, up to STOP_TIMEOUT_S); returns their pids."""
    servers = running_servers(root)
    for server in servers:
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(server.alive() for server in servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [server.pid for server in servers]


def _not_serving(base: str, why: str) -> None:
    """Say why, and keep the start lock without listening for IDLE_S: until then every run runs in its own process
    rather than starting a server that would not serve either."""
    log(f"not serving: {why}; exiting in {IDLE_S:g} s")
    _write_pid_file(base)
    time.sleep(IDLE_S)
    os.unlink(base + ".pid")


def main(argv: list[str] | None = None) -> Job | None:
    parser = argparse.ArgumentParser(prog="python -m flows.engine_server", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="the socket to listen on (flows.engine names it)")
    parser.add_argument("--lock-fd", type=int, help="the start lock, held by the client that started this server")
    parser.add_argument("--stop", action="store_true", help="stop this checkout's servers and exit")
    args = parser.parse_args(argv)
    if args.stop:
        pids = stop_servers()
        print(f"stopped engine server(s) {', '.join(map(str, pids))}" if pids else "no engine server running")
        return None
    if args.socket is None or args.lock_fd is None:
        parser.error("--socket and --lock-fd, or --stop")
    key, base = engine.server_key(), args.socket.removesuffix(".sock")  # before any import can change the path
    if os.path.basename(args.socket) != f"{key}.sock":
        return _not_serving(base, f"{args.socket} is not this interpreter's and environment's socket ({key}.sock)")
    engine.prepare()
    with collector_paused():
        warm_up()
    if threading.active_count() != 1:
        return _not_serving(base, f"the imports started threads, and forking a process with threads is unsafe: "
                            f"{threading.enumerate()}")
    os.chmod(os.path.dirname(args.socket), 0o700)
    os.chdir("/")  # the directory of the run that started it, which its worker removes
    return Server(args.socket, args.lock_fd, key).serve()


if __name__ == "__main__":
    job = main()
    if job is not None:
        become_run(job)
