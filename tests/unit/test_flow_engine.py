"""flows/engine.py is Prefect's engine: the same arguments, the same answers, run here or by the warm engine
(flows/engine_server.py), whose runs end, and answer signals, as a process started in their place would."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from meshid.runrecord import proc_stat
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120
RUN = re.compile(r"run process (\d+) for client pid (\d+)")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A meshid home of the test's own; the engine servers started under it are stopped at the end."""
    from flows import engine_server

    monkeypatch.setenv("MESHID_HOME", str(tmp_path / "home"))
    yield tmp_path / "home" / "engine"
    engine_server.stop_servers()
    for pid in _server_pids(tmp_path / "home" / "engine"):
        os.kill(pid, signal.SIGKILL)


def _server_pids(folder: Path) -> list[int]:
    found = []
    for log in folder.glob("*.log"):
        for pid in set(re.findall(r"engine server (\d+):", log.read_text())):
            if _alive(int(pid)):
                found.append(int(pid))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not: a server outlives the client that started it, and nothing may reap it)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect"),
            "DO_NOT_TRACK": "1", "MESHID_HOME": str(tmp_path / "home"), "MESHID_WARM_ENGINE_IDLE_S": "120", **extra}


def _engine(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flows.engine", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    return proc.returncode, out


def _log(folder: Path) -> str:
    return "".join(log.read_text() for log in folder.glob("*.log"))


def _wait_for(what: str, probe, timeout_s: float = TIMEOUT_S):  # noqa: ANN001
    return wait_for(what, probe, timeout_s, every_s=0.1)


def _listening(folder: Path) -> None:
    """Wait until a server of `folder` listens (after the first run started it)."""
    _wait_for("the engine server to listen", lambda: "listening on" in _log(folder) and list(folder.glob("*.sock")))


def _served(folder: Path, client: int) -> int | None:
    """The pid of the run process the server forked for `client`, if it forked one."""
    return next((int(child) for child, pid in RUN.findall(_log(folder)) if int(pid) == client), None)


def _same(out: str) -> str:
    """Output without what differs between two runs: times, and the warning runpy gives both."""
    return re.sub(r"^\d\d:\d\d:\d\d\.\d+ ", "", out, flags=re.M)


@pytest.fixture
def blackhole():
    """An API address that accepts connections and never answers: Prefect's engine waits there for the flow run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api"


def test_the_engine_command_runs_prefects_engine_which_refuses_a_bad_flow_run_id(tmp_path, home):
    cold = _engine(_env(tmp_path, MESHID_WARM_ENGINE="0"), tmp_path, "not-a-uuid")
    code, out = _finish(cold)
    # prefect/engine.py's __main__: an id that is no UUID is logged and ends the process with 1
    assert code == 1, out[-2000:]
    assert "Invalid flow run id. Received arguments: " in out and "'not-a-uuid'" in out
    together = [_engine(_env(tmp_path), tmp_path, "not-a-uuid") for _ in range(3)]  # runs a worker starts at once
    for run in together:
        assert _finish(run)[0] == code
    assert all(_served(home, run.pid) is not None for run in together), (
        f"the first finds no server and starts one, the others find it starting; all wait for it: {_log(home)}")
    assert _log(home).count("listening on") == 1
    warm = _engine(_env(tmp_path), tmp_path, "not-a-uuid")
    code_warm, out_warm = _finish(warm)
    assert _served(home, warm.pid) is not None, _log(home)
    assert (code_warm, _same(out_warm)) == (code, _same(out))


def test_opted_out_the_engine_runs_in_its_own_process_and_starts_no_server(tmp_path, home):
    code, out = _finish(_engine(_env(tmp_path, MESHID_WARM_ENGINE="0"), tmp_path, "not-a-uuid"))
    assert code == 1 and "Invalid flow run id" in out
    assert not home.exists()


def _warm_run(tmp_path: Path, home: Path, api_url: str) -> tuple[subprocess.Popen, int]:
    """A run through a listening server, waiting for its flow run at `api_url`; the client and the child's pid."""
    _finish(_engine(_env(tmp_path), tmp_path, "not-a-uuid"))  # starts the server
    _listening(home)
    client = _engine(_env(tmp_path, PREFECT_API_URL=api_url), tmp_path, str(uuid.uuid4()))
    child = _wait_for("the server to fork the run", lambda: _served(home, client.pid))
    return client, child


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_command_reaches_the_run_which_ends_as_a_process_started_in_its_place(
        tmp_path, home, blackhole, sig):
    cold = _engine(_env(tmp_path, MESHID_WARM_ENGINE="0", PREFECT_API_URL=blackhole), tmp_path, str(uuid.uuid4()))
    client, child = _warm_run(tmp_path, home, blackhole)
    time.sleep(1)  # both wait for the API
    cold.send_signal(sig)
    client.send_signal(sig)
    code, out = _finish(client)
    assert code == _finish(cold)[0], out[-3000:]
    assert code == -sig, out[-3000:]
    assert not _alive(child)


def test_a_command_killed_takes_its_run_with_it(tmp_path, home, blackhole):
    client, child = _warm_run(tmp_path, home, blackhole)
    client.kill()  # as a lost worker's flow-run process, or one past the worker's grace period
    _finish(client)
    _wait_for("the run process to be killed", lambda: not _alive(child), 10)


def test_a_changed_module_makes_the_server_stale_and_that_run_runs_in_its_own_process(tmp_path, home):
    # a module every process of this test imports at start: its change is a code change under the server
    extra = tmp_path / "site"
    extra.mkdir()
    (extra / "sitecustomize.py").write_text('"""A module the test touches."""\n')
    env = _env(tmp_path, PYTHONPATH=f"{extra}{os.pathsep}{ROOT}")
    _finish(_engine(env, tmp_path, "not-a-uuid"))
    _listening(home)
    [server] = _server_pids(home)
    later = time.time() + 5
    os.utime(extra / "sitecustomize.py", (later, later))
    client = _engine(env, tmp_path, "not-a-uuid")
    code, out = _finish(client)
    assert code == 1 and "Invalid flow run id" in out
    assert "stale: " in _log(home) and _served(home, client.pid) is None, _log(home)
    _wait_for("the stale server to exit", lambda: not _alive(server), 10)
    assert not list(home.glob("*.sock")) and not list(home.glob("*.pid"))


def test_an_idle_server_exits(tmp_path, home):
    _finish(_engine(_env(tmp_path, MESHID_WARM_ENGINE_IDLE_S="1"), tmp_path, "not-a-uuid"))
    _listening(home)
    _wait_for("the idle server to exit", lambda: "idle for 1 s" in _log(home) and not _server_pids(home), 30)
    assert not list(home.glob("*.sock"))
