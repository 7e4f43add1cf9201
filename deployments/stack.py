"""`python -m deployments.stack up|down|status [--state-dir DIR]`: meshid's Prefect stack on this machine.

`up` starts, in the network namespace it is called in and each in a session of its own (they outlive the call):
- PostgreSQL from the Debian package (installed when missing and root), its data under `<state dir>/postgres`, run
  as the `postgres` user when root, listening on 127.0.0.1 only, with a generated password (`postgres/password`,
  0600; it reaches the server through its environment, never a command line or a log);
- `prefect server start` on it (`<state dir>/prefect`), with concurrency leases on disk
  (`PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=...filesystem`): Prefect keeps them in memory by default, so a server
  restart would forget every held lease while the limits still count their slots, and no cluster lock taken before
  the restart would ever be freed;
- `deployments.setup` (pool `meshid`, limits, the zombie-run automation) and `prefect deploy --all` when the
  database is new or lacks the fleet-target deployment;
- two process workers on pool `meshid`, `meshid-default` (queue `default`) and `meshid-eu` (queue `eu`), each with
  its own PREFECT_HOME and MESHID_RUNS_DIR (`<state dir>/workers/<name>/`: nothing shared with the fleet), flow-run
  heartbeats every HEARTBEAT_S (zombie detection, see deployments/setup.py) and a poll for runs every POLL_S.

It returns once all of it answers and prints `PREFECT_API_URL=<url>` as its last line. A second `up` reuses what runs
and starts what does not. `down` stops the workers (and the flow runs they started), the server and PostgreSQL, and
keeps the database; it also stops this checkout's warm engine (flows/engine_server.py), which the workers' first
flow run started. Every wait is bounded and says what it waited for and what it saw last.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from flows.engine_server import stop_servers
from meshid.prefectserver import SERVER_TUNING
from meshid.runrecord import Writer, proc_stat
from sandbox import processes

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
POOL = "meshid"
WORKERS = {"meshid-default": "default", "meshid-eu": "eu"}  # worker name: its work queue
HEARTBEAT_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the workers' flow runs (Prefect's minimum)
POLL_S = 5  # PREFECT_WORKER_QUERY_SECONDS: how often a worker asks for runs (Prefect's default is 10)
DB_USER, DB_NAME = "meshid", "prefect"
# The server without CSRF protection (Prefect's default, said here so the pair stays matched), and its workers' runs
# told so: else each of their Prefect clients first asks for a token and is answered 422 (prefect/client/base.py).
CSRF_OFF = {"server": {"PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "false"},
            "client": {"PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "false"}}
LEASES = "prefect.server.concurrency.lease_storage.filesystem"
START_TIMEOUT_S = 240.0  # a server's migrations on a fresh database and a busy 2-core machine
CALL_TIMEOUT_S = 600.0  # apt-get, setup, deploy
PG_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30.0
POLL_WAIT_S = 0.5


class StackError(Exception):
    """A part of the stack did not start or stop; the message names it, what was seen, and its log."""


@dataclass(frozen=True)
class Stack:
    """Where a stack keeps its state, and its ports."""

    state_dir: Path
    api_port: int = 4200
    pg_port: int = 54329

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api"

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def worker_dir(self, name: str) -> Path:
        return self.state_dir / "workers" / name


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# Processes the stack started, recorded as pid and start time (a reused pid is not mistaken for them)


def _load(stack: Stack) -> dict:
    try:
        return json.loads(stack.state_file.read_text())
    except (OSError, ValueError):
        return {}


def _save(stack: Stack, state: dict) -> None:
    stack.state_dir.mkdir(parents=True, exist_ok=True)
    processes.write_atomically(stack.state_file, json.dumps(state, indent=2))


def running(stack: Stack, name: str) -> Writer | None:
    """The live process `name` (server, or a worker's name) of the stack, if it runs."""
    found = _load(stack).get("processes", {}).get(name)
    writer = Writer(**found) if found else None
    return writer if writer is not None and writer.alive() else None


def _record(stack: Stack, name: str, pid: int | None) -> None:
    state = _load(stack)
    procs = state.setdefault("processes", {})
    writer = None if pid is None else Writer.of(pid)
    if writer is None:  # none started, or it is gone already
        procs.pop(name, None)
    else:
        procs[name] = writer.model_dump()
    state.update(api_url=stack.api_url, pg_port=stack.pg_port, netns=_netns(os.getpid()))
    _save(stack, state)


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (a worker's flow-run processes run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))  # field 4: the parent's pid
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _wait(what: str, probe, timeout_s: float, log: Path | None = None, pid: int | None = None) -> None:  # noqa: ANN001
    """Poll `probe()` (returns (done, what it saw)) until done; StackError naming what was awaited and seen last."""
    deadline = time.monotonic() + timeout_s
    seen = "nothing yet"
    while time.monotonic() < deadline:
        done, seen = probe()
        if done:
            return
        if pid is not None and not processes.alive(pid):
            raise StackError(f"{what}: the process exited; last seen: {seen}" + _log_tail(log))
        time.sleep(POLL_WAIT_S)
    raise StackError(f"waited {timeout_s:g} s for {what}; last seen: {seen}" + _log_tail(log))


def _log_tail(log: Path | None) -> str:
    return f"\nlast lines of {log}:\n{processes.tail(log)}" if log else ""


def _run(argv: list[str], what: str, env: dict[str, str] | None = None, user: str | None = None,
         timeout_s: float = CALL_TIMEOUT_S) -> str:
    """Run a command to its end (its own timeout); StackError with its output when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=PROJECT,
                              user=user, group=user, extra_groups=[] if user else None)
    except subprocess.TimeoutExpired:
        raise StackError(f"{what} did not end within {timeout_s:g} s") from None
    if done.returncode != 0:
        raise StackError(f"{what} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


# PostgreSQL


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's bin directory; installs the Debian package when missing and root."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        if os.geteuid() != 0:
            raise StackError("PostgreSQL is not installed: sudo apt-get install postgresql, then run this again")
        say("installing PostgreSQL (apt-get install postgresql)...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], "apt-get update", env)
        _run(["apt-get", "install", "-y", "-q", "postgresql"], "apt-get install postgresql", env)
        return _pg_bin()
    return Path(found[-1]).parent


def _pg_user() -> str | None:
    """initdb and postgres refuse to run as root: as root they run as the Debian package's `postgres` user."""
    return "postgres" if os.geteuid() == 0 else None


def _password(stack: Stack) -> str:
    path = stack.pg_dir / "password"
    if not path.exists():
        stack.pg_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _pg(stack: Stack, tool: str, *args: str, what: str) -> str:
    return _run([str(_pg_bin() / tool), *args], what, user=_pg_user(), timeout_s=PG_TIMEOUT_S + 30)


def _pg_running(stack: Stack) -> bool:
    data = stack.pg_dir / "data"
    if not (data / "PG_VERSION").exists():
        return False
    done = subprocess.run([str(_pg_bin() / "pg_ctl"), "status", "-D", str(data)], capture_output=True, text=True,
                          timeout=PG_TIMEOUT_S, user=_pg_user(), group=_pg_user(),
                          extra_groups=[] if _pg_user() else None)
    return done.returncode == 0


def start_postgres(stack: Stack) -> bool:
    """PostgreSQL up with the stack's database; True when this call created the database."""
    data, run_dir = stack.pg_dir / "data", stack.pg_dir / "run"
    password = _password(stack)
    created = not (data / "PG_VERSION").exists()
    if created:
        say(f"creating the database cluster in {data}...")
        for folder in (data, run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        pwfile = stack.pg_dir / "initdb.pw"
        pwfile.touch(mode=0o600)
        pwfile.write_text(password)
        if _pg_user():
            shutil.chown(stack.pg_dir, _pg_user(), _pg_user())
            for path in (data, run_dir, pwfile):
                shutil.chown(path, _pg_user(), _pg_user())
        try:
            _pg(stack, "initdb", "-D", str(data), "-U", DB_USER, "--auth=scram-sha-256", f"--pwfile={pwfile}",
                "-E", "UTF8", "--no-locale", what="initdb")
        finally:
            pwfile.unlink()
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("include_if_exists = 'meshid-stack.conf'\n")
    # written on every start: the port may change between calls
    (data / "meshid-stack.conf").write_text(f"listen_addresses = '127.0.0.1'\nport = {stack.pg_port}\n"
                                            f"unix_socket_directories = '{run_dir}'\n")
    if _pg_user():
        shutil.chown(data / "meshid-stack.conf", _pg_user(), _pg_user())
    if not _pg_running(stack):
        say(f"starting PostgreSQL on 127.0.0.1:{stack.pg_port}...")
        _pg(stack, "pg_ctl", "start", "-D", str(data), "-l", str(stack.pg_dir / "postgres.log"), "-w", "-t",
            str(PG_TIMEOUT_S), what="pg_ctl start")
    if created:
        env = {**os.environ, "PGPASSWORD": password}
        _run([str(_pg_bin() / "createdb"), "-h", "127.0.0.1", "-p", str(stack.pg_port), "-U", DB_USER, DB_NAME],
             "createdb", env, timeout_s=PG_TIMEOUT_S)
    return created


def stop_postgres(stack: Stack) -> None:
    if _pg_running(stack):
        _pg(stack, "pg_ctl", "stop", "-D", str(stack.pg_dir / "data"), "-m", "fast", "-w", "-t", str(PG_TIMEOUT_S),
            what="pg_ctl stop")


# The Prefect server


def _server_env(stack: Stack) -> dict[str, str]:
    home = stack.state_dir / "prefect"
    url = f"postgresql+asyncpg://{DB_USER}:{_password(stack)}@127.0.0.1:{stack.pg_port}/{DB_NAME}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASES, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1", "PREFECT_API_URL": stack.api_url, **SERVER_TUNING, **CSRF_OFF["server"]}


def _healthy(stack: Stack) -> tuple[bool, str]:
    try:
        answer = httpx.get(f"{stack.api_url}/health", timeout=5)
        return answer.status_code == 200, f"HTTP {answer.status_code} from {stack.api_url}/health"
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__} from {stack.api_url}/health"


def start_server(stack: Stack) -> None:
    """`prefect server start` on the stack's database, unless it runs; returns once /health answers."""
    log = stack.state_dir / "prefect" / "server.log"
    found = running(stack, "server")
    if found is None:
        say(f"starting the Prefect server on {stack.api_url}...")
        pid = processes.start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                               str(stack.api_port)], log, env=_server_env(stack))
        _record(stack, "server", pid)
        found = running(stack, "server")
    _wait(f"the Prefect server to answer on {stack.api_url}/health", lambda: _healthy(stack), START_TIMEOUT_S, log,
          found.pid if found else None)


def stop_server(stack: Stack) -> None:
    """Stop the Prefect server (its process group), keeping everything else."""
    found = running(stack, "server")
    if found is not None:
        processes.stop(found.pid, timeout_s=STOP_TIMEOUT_S)
    _record(stack, "server", None)


def _client_env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_API_URL": stack.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1"}


def _deployed(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.api_url}/deployments/name/fleet-target/fleet-target", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def set_up(stack: Stack) -> None:
    """Pool, limits and automations (`deployments.setup`), then the project's deployments."""
    say("creating the work pool, limits and automations, deploying the project...")
    for line in _run([str(BIN / "python"), "-m", "deployments.setup"], "deployments.setup",
                     _client_env(stack)).splitlines():
        say(f"  {line}")
    _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], "prefect deploy --all", _client_env(stack))


# Workers


def _worker_env(stack: Stack, name: str) -> dict[str, str]:
    folder = stack.worker_dir(name)
    # meshid's environment first on PATH, as an activated venv has it: prefect.yaml's command is `python -m ...`
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", os.defpath)])
    return {**_client_env(stack), "PATH": path, "PREFECT_HOME": str(folder / "home"),
            "MESHID_RUNS_DIR": str(folder / "runs"),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S), "PREFECT_WORKER_QUERY_SECONDS": str(POLL_S),
            "PREFECT_LOGGING_LEVEL": "INFO", **CSRF_OFF["client"]}


def _worker_online(stack: Stack, name: str) -> tuple[bool, str]:
    """Whether the worker has polled its queue (the queue is READY), as the API says."""
    queue = WORKERS[name]
    try:
        answer = httpx.get(f"{stack.api_url}/work_pools/{POOL}/queues/{queue}", timeout=10)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__} from the API"
    if answer.status_code != 200:
        return False, f"queue {POOL}/{queue}: HTTP {answer.status_code}"
    status = answer.json().get("status")
    return status == "READY", f"queue {POOL}/{queue} status {status}"


def _ensure_queue(stack: Stack, queue: str) -> None:
    """Create the work queue unless it exists: a worker polls the queues it is given and creates none."""
    try:
        answer = httpx.post(f"{stack.api_url}/work_pools/{POOL}/queues", json={"name": queue}, timeout=30)
    except httpx.HTTPError as exc:
        raise StackError(f"creating work queue {POOL}/{queue}: {type(exc).__name__}") from None
    if answer.status_code not in (201, 409):  # 409: it exists
        raise StackError(f"creating work queue {POOL}/{queue}: HTTP {answer.status_code} {answer.text[:300]}")


def start_workers(stack: Stack) -> None:
    """Each worker that does not run; returns once every worker's queue is READY (polled by it)."""
    for name, queue in WORKERS.items():
        _ensure_queue(stack, queue)
        if running(stack, name) is None:
            say(f"starting worker {name} on {POOL}/{queue}...")
            folder = stack.worker_dir(name)
            (folder / "runs").mkdir(parents=True, exist_ok=True)
            pid = processes.start([str(BIN / "prefect"), "worker", "start", "-p", POOL, "-q", queue, "-n", name,
                                   "--type", "process"], folder / "worker.log", env=_worker_env(stack, name))
            _record(stack, name, pid)
    for name in WORKERS:
        found = running(stack, name)
        _wait(f"worker {name} to poll its queue", lambda n=name: _worker_online(stack, n), START_TIMEOUT_S,
              stack.worker_dir(name) / "worker.log", found.pid if found else None)


def stop_worker(stack: Stack, name: str, kill: bool = False) -> list[int]:
    """Stop a worker and the flow-run processes it started (SIGTERM, SIGKILL after STOP_TIMEOUT_S; `kill`: SIGKILL
    at once, as a machine that is lost). Returns the pids it ended."""
    found = running(stack, name)
    if found is None:
        return []
    pids = [found.pid, *descendants(found.pid)]
    if kill:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    else:
        for pid in reversed(pids[1:]):
            processes.stop(pid, group=False, timeout_s=STOP_TIMEOUT_S)
        processes.stop(found.pid, timeout_s=STOP_TIMEOUT_S)
    _record(stack, name, None)
    return pids


# The whole stack


def up(stack: Stack) -> str:
    """Everything, reusing what runs; returns the API URL."""
    elsewhere = [name for name in ("server", *WORKERS) if (w := running(stack, name))
                 and _netns(w.pid) != _netns(os.getpid())]
    if elsewhere:
        raise StackError(f"{', '.join(elsewhere)} of the stack in {stack.state_dir} run(s) in another network "
                         "namespace, where 127.0.0.1 is not this one's: stop the stack there (make stack-down), or "
                         "give another --state-dir")
    created = start_postgres(stack)
    start_server(stack)
    if created or not _deployed(stack):
        set_up(stack)
    start_workers(stack)
    return stack.api_url


def down(stack: Stack) -> None:
    """Stop the workers, this checkout's warm engine, the server and PostgreSQL; the database stays."""
    for name in WORKERS:
        stop_worker(stack, name)
    stop_servers()
    stop_server(stack)
    stop_postgres(stack)


def status(stack: Stack) -> dict[str, str]:
    """Each part of the stack: running (with its pid) or not."""
    parts = {name: f"running, pid {w.pid}" if (w := running(stack, name)) else "not running"
             for name in ("server", *WORKERS)}
    return {"postgres": "running" if _pg_running(stack) else "not running", **parts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("MESHID_STACK_DIR", PROJECT / ".state")),
                        help="where the database, logs and state live (default: MESHID_STACK_DIR, else ./.state)")
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("MESHID_STACK_API_PORT", 4200)))
    parser.add_argument("--pg-port", type=int, default=int(os.environ.get("MESHID_STACK_PG_PORT", 54329)))
    args = parser.parse_args(argv)
    stack = Stack(args.state_dir.resolve(), args.api_port, args.pg_port)
    try:
        if args.command == "up":
            print(f"PREFECT_API_URL={up(stack)}")
        elif args.command == "down":
            down(stack)
            say(f"stack stopped; the database stays in {stack.pg_dir / 'data'}")
        else:
            for part, line in status(stack).items():
                print(f"{part:<16} {line}")
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
