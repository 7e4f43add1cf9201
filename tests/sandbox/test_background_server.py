"""meshid's background Prefect server (`meshid/prefectserver.py`) through the `meshid` command, each test in a meshid
home of its own whose server it stops at the end: a second run from a fresh shell starts no server and its run is in
the server's history; a killed server and one that does not answer are replaced, with one line; PREFECT_API_URL set
by the user wins and meshid starts nothing; two first runs at once share one server; a terminal's Ctrl-C while the
first run waits for the server leaves the server starting; a server in another network namespace is replaced;
`meshid server status|start|stop` say what they see.

Runs are `meshid run` on a sandbox the run starts (a fast emulator tick keeps them short). Which Prefect servers a
command started is sampled from /proc every 50 ms while it runs: a server it starts is its child until it exits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from meshid.prefectserver import BackgroundServer, State
from tests.conftest import isolated_meshid_home, require_private_netns, wait_gone, working_in

MESHID = [sys.executable, "-m", "cli"]
RUN_TIMEOUT_S = 600
# A Prefect server's command line: `prefect server start` (meshid's background server, `python -m prefect ...`), or
# uvicorn serving Prefect's app (the temporary server Prefect starts itself without an API URL,
# `SubprocessASGIServer` in prefect/server/api/server.py).
SERVER_MARKS = (b"prefect\0server\0start", b"prefect.server.api.server:create_app")
VIEW_AT = re.compile(r"View at (http://127\.0\.0\.1:\d+)/runs/flow-run/([0-9a-f-]{36})")
STARTING = "meshid: starting a background Prefect server at "


@pytest.fixture
def home(tmp_path):
    require_private_netns()
    with isolated_meshid_home(tmp_path / "home") as path:
        yield path


@pytest.fixture
def other_home(tmp_path):
    with isolated_meshid_home(tmp_path / "other-home") as path:
        yield path


def _env(home: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A fresh shell's environment for `home`: no PREFECT_API_URL, and a Prefect home without anyone's profiles."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE",
                                                             "PREFECT_PROFILES_PATH")}
    env.update(MESHID_HOME=str(home), MESHID_RUNS_DIR=str(tmp_path / "runs"), MESHID_SANDBOX_TICK_S="0.5",
               PREFECT_HOME=str(tmp_path / "prefect-client"), **extra)
    return env


def _servers_started_by(pid: int) -> set[int]:
    """Prefect servers that are children of process `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if any(mark in cmdline for mark in SERVER_MARKS):
            found.add(int(entry.name))
    return found


@dataclass
class Command:
    """A `meshid` command in its own process; the Prefect servers it started, sampled while it runs."""

    env: dict[str, str]
    args: tuple[str, ...]
    new_session: bool = False
    started: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen([*MESHID, *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=self.env, start_new_session=self.new_session)
        self.err_lines: list[str] = []
        self._sampled = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _sample(self) -> None:
        while self.proc.poll() is None:
            self.started |= _servers_started_by(self.proc.pid)
            time.sleep(0.05)
        self._sampled.set()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err_lines.append(line)

    def wait_for(self, text: str, timeout_s: float = 120) -> None:
        """Until a stderr line contains `text`."""
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.err_lines):
            assert self.proc.poll() is None, f"exited before {text!r}:\n{self.err}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout_s} s:\n{self.err}"
            time.sleep(0.05)

    def finish(self) -> Command:
        try:
            self.out = self.proc.stdout.read()
            self.proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"meshid {' '.join(self.args)} still running after {RUN_TIMEOUT_S} s:\n{self.err[-3000:]}")
        self._reader.join(timeout=10)
        self._sampled.wait(timeout=10)
        return self

    @property
    def err(self) -> str:
        return "".join(self.err_lines)

    @property
    def rc(self) -> int:
        return self.proc.returncode

    def server_lines(self) -> list[str]:
        """What meshid said about the background server."""
        return [line for line in self.err_lines if line.startswith("meshid:") and "Prefect server" in line]

    def flow_run(self) -> tuple[str, str]:
        """The UI's address and the id of the run's flow run, from the line that says where to see it."""
        found = VIEW_AT.search(self.err)
        assert found, f"no `View at` line:\n{self.err[-3000:]}"
        return found.group(1), found.group(2)


def meshid(env: dict[str, str], *args: str) -> Command:
    return Command(env, args).finish()


def _passed(cmd: Command) -> None:
    assert cmd.rc == 0 and cmd.out.rstrip().endswith("run passed"), f"exit {cmd.rc}\n{cmd.out}\n{cmd.err[-3000:]}"
    assert "Traceback" not in cmd.err


def _history(api_url: str) -> dict[str, dict]:
    """The server's flow runs by id."""
    runs = httpx.post(f"{api_url}/flow_runs/filter", json={}, timeout=30)
    runs.raise_for_status()
    return {run["id"]: run for run in runs.json()}


def _running(home: Path):
    seen = BackgroundServer(home).look()
    assert seen.state is State.RUNNING, seen.describe()
    return seen.record


def test_a_second_run_from_a_fresh_shell_starts_no_server_and_both_runs_are_in_its_history(home, tmp_path):
    env = _env(home, tmp_path)
    first = meshid(env, "run", "--target-name", "bg-first")
    _passed(first)
    server = _running(home)
    assert first.started == {server.process.pid}, "the first run started the background server, and only it"
    assert [line for line in first.server_lines() if line.startswith(STARTING)] == first.server_lines()
    second = meshid(_env(home, tmp_path), "run", "--target-name", "bg-second")
    _passed(second)
    assert second.started == set() and second.server_lines() == [], second.server_lines()
    assert _running(home) == server
    history = _history(server.api_url)
    for run, name in ((first, "guide-bg-first"), (second, "guide-bg-second")):
        ui, flow_run_id = run.flow_run()
        assert ui == server.url
        assert history[flow_run_id]["name"].startswith(name) and history[flow_run_id]["state_type"] == "COMPLETED"
        page = httpx.get(f"{ui}/runs/flow-run/{flow_run_id}", headers={"Accept": "text/html"}, timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower(), "the UI serves the run's address to a browser"


def test_a_killed_server_is_replaced_with_one_line_and_its_history_stays(home, tmp_path):
    env = _env(home, tmp_path)
    first = meshid(env, "run", "--target-name", "bg-before")
    _passed(first)
    killed = _running(home)
    os.kill(killed.process.pid, signal.SIGKILL)
    assert wait_gone(killed.process.pid)
    status = meshid(env, "server", "status")
    assert status.rc == 1 and f"dead: pid {killed.process.pid} ({killed.url}) is gone" in status.out, status.out
    run = meshid(env, "run", "--target-name", "bg-after")
    _passed(run)
    [line] = run.server_lines()
    assert line.startswith(f"meshid: the background Prefect server is dead: pid {killed.process.pid} ({killed.url}) "
                           "is gone; a new one starts at http://127.0.0.1:"), line
    server = _running(home)
    assert server.process != killed.process and run.started == {server.process.pid}
    assert server.port == killed.port, "the new server takes the last port again while it is free"
    history = _history(server.api_url)
    assert {first.flow_run()[1], run.flow_run()[1]} <= set(history), "the runs before the replacement stay"


def test_a_server_that_does_not_answer_is_replaced_with_one_line(home, tmp_path):
    env = _env(home, tmp_path)
    assert meshid(env, "server", "start").rc == 0
    hung = _running(home)
    os.kill(hung.process.pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        start = meshid(env, "server", "start")
    finally:
        if hung.process.alive():
            os.kill(hung.process.pid, signal.SIGKILL)
    assert start.rc == 0, start.err
    [line] = start.server_lines()
    assert line.startswith(f"meshid: the background Prefect server is not answering: pid {hung.process.pid} at "
                           f"{hung.url} runs, but /api/health gave no answer within 5 s; a new one starts at "), line
    assert wait_gone(hung.process.pid), "the hung server was ended"
    assert _running(home).process != hung.process


def test_a_server_in_another_network_namespace_is_replaced_with_one_line_naming_it(home, tmp_path):
    """Its 127.0.0.1 is another loopback: this namespace can never reach it."""
    nested = subprocess.run(["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *MESHID,
                             "server", "start"], capture_output=True, text=True, timeout=300, env=_env(home, tmp_path))
    assert nested.returncode == 0, nested.stderr
    elsewhere = BackgroundServer(home).look()
    assert elsewhere.state is State.NOT_ANSWERING, elsewhere.describe()
    start = meshid(_env(home, tmp_path), "server", "start")
    assert start.rc == 0, start.err
    [line] = start.server_lines()
    assert f"is not answering: pid {elsewhere.record.process.pid} at {elsewhere.record.url} runs, but /api/health " \
           "gave ConnectionRefusedError" in line and "it runs in another network namespace, which this one cannot " \
           "reach; a new one starts at " in line, line
    assert wait_gone(elsewhere.record.process.pid) and _running(home).process != elsewhere.record.process


def test_prefect_api_url_set_by_the_user_wins_and_meshid_starts_no_server(home, other_home, tmp_path):
    theirs = meshid(_env(other_home, tmp_path), "server", "start")
    assert theirs.rc == 0, theirs.err
    server = _running(other_home)
    run = meshid(_env(home, tmp_path, PREFECT_API_URL=server.api_url), "run", "--target-name", "bg-theirs")
    _passed(run)
    assert run.started == set() and run.server_lines() == []
    assert not (home / "prefect-server").exists(), "meshid started nothing in its own home"
    ui, flow_run_id = run.flow_run()
    assert ui == server.url and flow_run_id in _history(server.api_url)


def test_two_first_runs_at_once_share_one_server(home, tmp_path):
    runs = [Command(_env(home, tmp_path), ("run", "--target-name", name)) for name in ("bg-a", "bg-b")]
    for run in runs:
        run.finish()
        _passed(run)
    server = _running(home)
    assert runs[0].started | runs[1].started == {server.process.pid}, "one server, started by one of them"
    starts = [line for run in runs for line in run.server_lines()]
    assert len(starts) == 1 and starts[0].startswith(STARTING + server.url), starts
    assert {run.flow_run()[1] for run in runs} <= set(_history(server.api_url))


def test_first_calls_at_the_same_moment_start_one_server(home, tmp_path):
    """Processes released together at a shared instant, each asking for the server: the lock lets one start it."""
    at = time.time() + 3  # after every process has imported meshid
    code = ("import sys, time\nfrom pathlib import Path\nfrom meshid.prefectserver import BackgroundServer\n"
            f"time.sleep(max(0.0, {at} - time.time()))\n"
            "handle = BackgroundServer(Path(sys.argv[1])).ensure(say=lambda line: None)\n"
            "print(handle.record.process.pid, handle.started)\n")
    calls = [subprocess.Popen([sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, text=True,
                              env=_env(home, tmp_path)) for _ in range(4)]
    answers = [call.communicate(timeout=120)[0].split() for call in calls]
    assert all(call.returncode == 0 for call in calls)
    assert sorted(started for _, started in answers) == ["False", "False", "False", "True"], answers
    assert len({pid for pid, _ in answers}) == 1, answers
    assert working_in(home / "prefect-server") == [int(answers[0][0])], "one server process, no second one"


def test_a_terminal_ctrl_c_while_the_first_run_waits_for_the_server_stops_the_run_and_not_the_server(home, tmp_path):
    """A terminal's Ctrl-C sends SIGINT to its foreground process group: here, the run's own group."""
    run = Command(_env(home, tmp_path), ("run", "--target-name", "bg-ctrl-c"), new_session=True)
    run.wait_for(STARTING)
    os.killpg(run.proc.pid, signal.SIGINT)
    run.finish()
    assert run.rc == 130 and "Traceback" not in run.err, run.err[-3000:]
    assert "meshid: the run was interrupted by SIGINT before it started; nothing to clean up" in run.err
    assert not (home / "sandboxes").exists() or not any((home / "sandboxes").iterdir()), "no sandbox was started"
    [server] = run.started
    again = meshid(_env(home, tmp_path), "server", "start")
    assert again.rc == 0 and again.server_lines() == [], again.err
    assert _running(home).process.pid == server, "the server went on starting and serves the next call"


def test_server_status_start_and_stop_say_what_they_see(home, tmp_path):
    env = _env(home, tmp_path)
    status = meshid(env, "server", "status")
    assert status.rc == 1 and status.out.startswith("background Prefect server: not running\n"), status.out
    assert "the next `meshid run` or `meshid fleet` starts one" in status.out
    assert "background Prefect server: none was running" in meshid(env, "server", "stop").out
    start = meshid(env, "server", "start")
    server = _running(home)
    assert start.rc == 0 and start.server_lines() == [f"{STARTING}{server.url} (its data: {home / 'prefect-server'}; "
                                                      "`meshid server stop` stops it)\n"], start.err
    assert start.out.startswith(f"background Prefect server: running at {server.url} (pid {server.process.pid}, up ")
    again = meshid(env, "server", "start")
    assert again.rc == 0 and again.server_lines() == [] and f"running at {server.url}" in again.out
    status = meshid(env, "server", "status")
    assert status.rc == 0 and f"running at {server.url} (pid {server.process.pid}, up " in status.out
    assert f"flow runs: {server.url}/runs" in status.out and f"database: {home / 'prefect-server' / 'prefect.db'}" \
        in status.out
    as_json = json.loads(meshid(env, "server", "status", "-o", "json").out)
    assert as_json["state"] == "running" and as_json["api_url"] == server.api_url and as_json["prefect_api_url"] is None
    moved = meshid(env, "server", "start", "--port", str(server.port + 1))
    assert moved.rc == 1 and f"not on port {server.port + 1}" in moved.out, moved.out
    stop = meshid(env, "server", "stop")
    assert f"background Prefect server: stopped (pid {server.process.pid}, {server.url})" in stop.out, stop.out
    assert wait_gone(server.process.pid, within_s=1), "stop returns once the server is gone"
    assert meshid(env, "server", "status").out.startswith("background Prefect server: not running\n")
    # A profile's PREFECT_API_URL is the user's too (prefect/settings/sources.py reads the active profile).
    profiles = tmp_path / "prefect-client" / "profiles.toml"
    profiles.parent.mkdir(exist_ok=True)
    profiles.write_text('active = "ops"\n[profiles.ops]\nPREFECT_API_URL = "https://ops:pa55@prefect.example.org/api"\n')
    status = meshid(env, "server", "status")
    assert "PREFECT_API_URL is set (https://ops:<redacted>@prefect.example.org/api): `meshid run` and `meshid fleet` " \
           "use that server, not this one" in status.out, status.out
