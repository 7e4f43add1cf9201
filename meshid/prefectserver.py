"""meshid's background Prefect server: one `prefect server start` per MESHID_HOME, started by the first `meshid run`
or `meshid fleet` that needs one and reused by every later call, so a command-line run pays no server start after the
first and its history stays in the UI.

It is library code and does not import Prefect: the server is a command (`python -m prefect server start`) asked
`/api/health` over HTTP, so `meshid server status|stop` answer without Prefect's import (1.6 s here), and a run
starts the server before it imports Prefect, so the start and the import overlap.

Files under `<MESHID_HOME>/prefect-server/`, which is also the server's PREFECT_HOME and working directory:
- `server.json`, the pid file: the process (pid and start time, so a reused pid is not taken for it), the port, when
  it started and when it first answered;
- `lock`, held while a call looks at, starts, replaces or stops the server: two first calls start one server;
- `port`, the last port: the next start takes it again while it is free, so the UI's address stays the same;
- `prefect.db` (SQLite: flow runs, task runs, logs, artifacts), `server.log` and `server.log.1` (the one before).

The server binds 127.0.0.1 only, has analytics off and runs in a session of its own: a terminal's Ctrl-C (SIGINT to
the foreground process group) and the end of the meshid process that started it leave it running.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel

from meshid import filelock, interrupt
from meshid.errors import ExternalCallError, InputError, WaitTimeout
from meshid.runrecord import Writer

HOST = "127.0.0.1"
FOLDER = "prefect-server"
API_URL_ENV = "PREFECT_API_URL"
# How meshid's servers (this one and `make stack`'s) write what the runs send them. By default the task run recorder
# writes each task-run state event in a database transaction of its own, and each stage makes three: batched, a task
# run's state reaches the database within the flush interval (the UI shows it up to a second later) and the server
# spends a fraction of the CPU per run. The event persister's batches grow the same way (it flushes every 5 s anyway).
SERVER_TUNING = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
                 "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
                 "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "100"}
HEALTH_TIMEOUT_S = 5.0  # one /api/health call; a started server that gives no answer within it is not answering
START_TIMEOUT_S = 120.0  # a first start migrates a new database: 16 s on this busy 2-core machine, 6 s after that
STOP_TIMEOUT_S = 10.0  # from SIGTERM to SIGKILL
LOCK_TIMEOUT_S = 60.0  # another call holds the lock for one look (a health call), one stop and one spawn at most
POLL_S = 0.1
LOG_LINES = 20  # of the server's log, in an error about its start


class State(StrEnum):
    """What a look at the server finds."""

    RUNNING = "running"
    STARTING = "starting"  # its process runs, it has never answered, and it started less than START_TIMEOUT_S ago
    DEAD = "dead"  # its process is gone
    NOT_ANSWERING = "not answering"  # its process runs, but /api/health fails (it answered before, or ran too long)
    STOPPED = "not running"  # none was started here, or it was stopped


class ServerRecord(BaseModel):
    """The pid file: which process serves, on which port, since when."""

    process: Writer
    port: int
    started_at: datetime
    ready_at: datetime | None = None  # its first answer to /api/health

    @property
    def url(self) -> str:
        """The UI's address (the API is under /api)."""
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        """The value PREFECT_API_URL takes to use this server."""
        return f"{self.url}/api"


@dataclass(frozen=True)
class Seen:
    """A look at the server: its state, its record, and what /api/health said when it did not answer."""

    state: State
    record: ServerRecord | None
    problem: str | None = None

    def describe(self) -> str:
        """The state in words, e.g. `running at http://127.0.0.1:41231 (pid 12, up 3 min)`."""
        if self.record is None:
            return self.state.value
        record, up = self.record, _age_s(self.record.started_at)
        pid = f"pid {record.process.pid}"
        if self.state is State.RUNNING:
            return f"running at {record.url} ({pid}, up {_duration(up)})"
        if self.state is State.STARTING:
            return f"starting at {record.url} ({pid}, {up:.0f} s since its start)"
        if self.state is State.DEAD:
            return f"dead: {pid} ({record.url}) is gone"
        return f"not answering: {pid} at {record.url} runs, but /api/health gave {self.problem}"


def configured_api_url() -> str | None:
    """PREFECT_API_URL as the user set it, found without importing Prefect: the environment, else the active profile.

    Prefect's own order (prefect/settings/sources.py, `_get_profiles_path` and `ProfileSettingsTomlLoader`): the
    profiles file is PREFECT_PROFILES_PATH, else PREFECT_HOME's profiles.toml (PREFECT_HOME defaults to ~/.prefect),
    and the active profile is PREFECT_PROFILE, else the file's `active`. The other places Prefect reads (a .env
    file, prefect.toml) are checked once Prefect is imported (`flows.foreground`).
    """
    if os.environ.get(API_URL_ENV):
        return os.environ[API_URL_ENV]
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    value = profiles.get("profiles", {}).get(active, {}).get(API_URL_ENV)
    return str(value) if value else None


def health(port: int) -> str | None:
    """None when the server on `port` answers /api/health with 200; else what happened instead."""
    conn = http.client.HTTPConnection(HOST, port, timeout=HEALTH_TIMEOUT_S)
    try:
        conn.request("GET", "/api/health")
        status = conn.getresponse().status
    except TimeoutError:
        return f"no answer within {HEALTH_TIMEOUT_S:g} s"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return None if status == 200 else f"HTTP {status}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class BackgroundServer:
    """The background Prefect server of one meshid home."""

    def __init__(self, home: Path) -> None:
        self.folder = home / FOLDER
        self.pid_file = self.folder / "server.json"
        self.port_file = self.folder / "port"
        self.log = self.folder / "server.log"
        self.database = self.folder / "prefect.db"

    def look(self) -> Seen:
        """The server's state now (one /api/health call, at most HEALTH_TIMEOUT_S)."""
        record = self._read()
        if record is None:
            return Seen(State.STOPPED, None)
        if not record.process.alive():
            return Seen(State.DEAD, record)
        problem = health(record.port)
        if problem is None:
            return Seen(State.RUNNING, record)
        if _elsewhere(record.process.pid):
            return Seen(State.NOT_ANSWERING, record, f"{problem}: it runs in another network namespace, which this "
                                                     "one cannot reach")
        if record.ready_at is None and _age_s(record.started_at) < START_TIMEOUT_S:
            return Seen(State.STARTING, record, problem)
        return Seen(State.NOT_ANSWERING, record, problem)

    def ensure(self, port: int | None = None, say: Callable[[str], None] = _say) -> Handle:
        """The running or starting server; else a new one, started now without waiting for it (`Handle.ready`),
        and one line through `say` saying so, and why when it replaces a dead one or one that does not answer.

        `port`: the port of a new server (else the last one while it is free, else any free port).
        """
        with self._locked():
            seen = self.look()
            if seen.state in (State.RUNNING, State.STARTING):
                return Handle(self, seen.record, started=False)
            if seen.state is State.NOT_ANSWERING:
                _end(seen.record.process)
            record = self._spawn(port)
            if seen.state is State.STOPPED:
                say(f"meshid: starting a background Prefect server at {record.url} (its data: {self.folder}; "
                    "`meshid server stop` stops it)")
            else:
                say(f"meshid: the background Prefect server is {seen.describe()}; a new one starts at {record.url}")
            return Handle(self, record, started=True)

    def stop(self) -> Seen:
        """Stop the server (SIGTERM to its process group, SIGKILL after STOP_TIMEOUT_S) and remove its pid file;
        returns what was there before (DEAD when only its pid file was left)."""
        with self._locked():
            record = self._read()
            if record is None:
                return Seen(State.STOPPED, None)
            alive = record.process.alive()
            if alive:
                _end(record.process)
            self.pid_file.unlink()
            return Seen(State.RUNNING if alive else State.DEAD, record)

    def _spawn(self, wanted: int | None) -> ServerRecord:
        port = self._port(wanted)
        if self.log.exists():
            self.log.replace(self.log.with_name(self.log.name + ".1"))
        # Nothing of the caller's Prefect settings: the server is the same whoever starts it (a PREFECT_API_URL
        # would also become its UI's API address, prefect/settings/models/root.py). The UI finds the API at
        # PREFECT_SERVER_API_HOST:PORT (same file), so those are set, not only --host and --port.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(self.folder), PREFECT_SERVER_API_HOST=HOST, PREFECT_SERVER_API_PORT=str(port),
                   PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{self.database}",
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="true",
                   PREFECT_SERVER_LOGGING_LEVEL="WARNING",  # uvicorn's access log off: one line per API call
                   **SERVER_TUNING)
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
        with self.log.open("ab") as out:
            proc = subprocess.Popen(argv, cwd=self.folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        process = Writer.of(proc.pid)
        if process is None:
            raise ExternalCallError("start the background Prefect server", self._exited(proc.pid))
        record = ServerRecord(process=process, port=port, started_at=datetime.now(UTC))
        self._write(record)
        self.port_file.write_text(str(port))
        return record

    def _port(self, wanted: int | None) -> int:
        if wanted is not None:
            if not _free(wanted):
                raise InputError("--port", f"port {wanted} on {HOST} is in use", "give a free port, or leave "
                                 "--port out (the last port while it is free, else any free one)")
            return wanted
        try:
            last = int(self.port_file.read_text())
        except (OSError, ValueError):
            last = 0
        if last and _free(last):
            return last
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            return sock.getsockname()[1]

    def _exited(self, pid: int) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-LOG_LINES:] if self.log.exists() else []
        return f"pid {pid} exited before it answered /api/health; last lines of {self.log}:\n" + "\n".join(lines)

    def wait_ready(self, record: ServerRecord) -> ServerRecord:
        """Wait until the server answers /api/health (at most START_TIMEOUT_S from its start) and note its first
        answer in the pid file; a stop request (`meshid.interrupt`) ends the wait, and the server goes on starting
        for the next call."""
        deadline = time.monotonic() + START_TIMEOUT_S - _age_s(record.started_at)
        interrupt.check()  # a stop that came before the wait ends it too
        while (problem := health(record.port)) is not None:
            if not record.process.alive():
                raise ExternalCallError("start the background Prefect server", self._exited(record.process.pid))
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"the background Prefect server at {record.url} to answer /api/health",
                                  f"{problem} (its log: {self.log})", START_TIMEOUT_S)
            interrupt.wait(POLL_S)
        if record.ready_at is None:
            with self._locked():
                if self._read() == record:
                    self._write(record.model_copy(update={"ready_at": datetime.now(UTC)}))
        return record

    def _read(self) -> ServerRecord | None:
        try:
            return ServerRecord.model_validate_json(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    def _write(self, record: ServerRecord) -> None:
        tmp = self.pid_file.with_name(self.pid_file.name + ".tmp")
        tmp.write_text(record.model_dump_json())
        tmp.replace(self.pid_file)  # a reader without the lock never sees it half written

    def _locked(self) -> AbstractContextManager[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        return filelock.held(self.folder / "lock", LOCK_TIMEOUT_S, "another meshid call starting or stopping "
                             "the background Prefect server")


@dataclass(frozen=True)
class Handle:
    """The server a call uses; `started` when this call started it."""

    server: BackgroundServer
    record: ServerRecord
    started: bool

    def ready(self) -> ServerRecord:
        """`BackgroundServer.wait_ready` for this server."""
        return self.server.wait_ready(self.record)


def _end(process: Writer) -> None:
    """SIGTERM to the process's group (and SIGCONT, so a stopped one can take it), SIGKILL after STOP_TIMEOUT_S."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not process.alive():
            return
        try:
            os.killpg(process.pid, signum)
            os.killpg(process.pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.05)


def _elsewhere(pid: int) -> bool:
    """Whether process `pid` is in another network namespace than this one (its 127.0.0.1 is another loopback)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:  # gone meanwhile, or not ours to read
        return False


def _free(port: int) -> bool:
    """Whether `port` on 127.0.0.1 can be bound (as uvicorn binds it: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _age_s(since: datetime) -> float:
    return (datetime.now(UTC) - since).total_seconds()


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{int(seconds)} s" if minutes == 0 else f"{minutes} min" if minutes < 60 else \
        f"{minutes // 60} h {minutes % 60} min"
