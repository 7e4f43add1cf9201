"""Interrupted runs leave nothing behind: SIGINT and SIGTERM delivered to a real `meshid run` while a given stage
runs, on a sandbox it starts and on an existing cluster; kill -9 and `meshid recover`; a second signal; `--cleanup
never`; and sandboxes whose owner run is gone.

Each run is a `meshid run` process without PREFECT_API_URL, found to be in a stage by its own log line `stage <name>,
attempt 1`. The runs use the background Prefect server of the module's own meshid home (the first run starts it, and
the module stops it at its end); no run starts a temporary server, and a signal to a run leaves the background server
serving. A fast emulator tick keeps the runs short; where a stage would
end before a signal can reach it, the world is made slower for that run (the MeshIdentity's Ready waits for a tick
of 30 s) or the stage is given a window to fill (a permission that never lets the demo in).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from meshid.interrupt import STOP_BOUND_S
from meshid.kube import Cluster
from meshid.ledger import FILE, Ledger
from meshid.models import parse_params
from meshid.runrecord import RunState, Writer
from meshid.settings import MeshidSettings
from meshid.stages import preflight
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.prefectserver import BackgroundServer, State
from sandbox import lifecycle, processes
from tests.conftest import isolated_meshid_home, require_private_netns

MESHID = [sys.executable, "-m", "cli"]
STOP_DEADLINE_S = 60  # from the signal to the process's exit, cleanup included
SLOW_TICK_S = 30
# What the uvicorn of a temporary Prefect server serves (`SubprocessASGIServer` in prefect/server/api/server.py), the
# one Prefect starts itself without an API URL and meshid's runs no longer start.
TEMPORARY_SERVER_APP = b"prefect.server.api.server:create_app"
NEVER_LETS_IN = ["--mtp-match", "Exact", "--mtp-value", "spiffe://default.default.mesh.local/ns/elsewhere/sa/default"]


@pytest.fixture(scope="module", autouse=True)
def meshid_home(tmp_path_factory):
    """A meshid home of the module's own: its sandboxes, and the background Prefect server its runs use, which the
    module stops at its end (also when a test failed)."""
    require_private_netns()
    with isolated_meshid_home(tmp_path_factory.mktemp("meshid-home")) as home, pytest.MonkeyPatch.context() as env:
        env.setenv("MESHID_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """The runs' client-side Prefect home: no profile of whoever runs the tests names a server."""
    return tmp_path_factory.mktemp("prefect-home")


class Run:
    """A `meshid run` process; its stderr read line by line as it comes."""

    def __init__(self, tmp_path: Path, prefect_home: Path, *args: str) -> None:
        self.runs_dir, self.report, self.junit = tmp_path / "runs", tmp_path / "report.json", tmp_path / "junit.xml"
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(MESHID_RUNS_DIR=str(self.runs_dir), MESHID_SANDBOX_TICK_S="0.5", PREFECT_HOME=str(prefect_home),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false")
        self.env = env
        self.proc = subprocess.Popen([*MESHID, "run", "--json-report", str(self.report), "--junit", str(self.junit),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.signalled_at = 0.0
        self._seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def wait_for(self, text: str, timeout_s: float = 180) -> None:
        """Until a stderr line contains `text`."""
        with self._seen:
            if not self._seen.wait_for(lambda: any(text in line for line in self.lines) or
                                       self.proc.poll() is not None, timeout_s):
                pytest.fail(f"no line with {text!r} after {timeout_s} s:\n{''.join(self.lines[-30:])}")
        assert any(text in line for line in self.lines), f"exited before {text!r}:\n{''.join(self.lines[-30:])}"

    def stage_started(self, stage: str) -> None:
        self.wait_for(f"stage {stage}, attempt 1")
        self.stage_seen_at = time.monotonic()  # a little after the stage's start

    def temporary_servers(self) -> list[int]:
        """Temporary Prefect servers this run started (children of it)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid and TEMPORARY_SERVER_APP in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        return found

    def send(self, signum: int) -> None:
        self.signalled_at = time.monotonic()
        self.proc.send_signal(signum)

    def finish(self, timeout_s: float = STOP_DEADLINE_S) -> tuple[int, str, str]:
        """Exit code, stdout and stderr; fails when the process needs more than `timeout_s`."""
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"meshid run still running {timeout_s} s after the signal:\n{''.join(self.lines[-30:])}")
        print(f"signal to exit: {time.monotonic() - self.signalled_at:.1f} s")
        time.sleep(0.1)  # the reader thread takes the last lines
        return self.proc.returncode, out, "".join(self.lines)

    def meshid(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*MESHID, *args], capture_output=True, text=True, timeout=600, env=self.env)


def _gone(name: str) -> None:
    """No sandbox `name`: no state, no folder, no process of it."""
    assert name not in [info.name for info in lifecycle.status()]
    state_dir = lifecycle.root() / name
    assert not state_dir.exists() and processes.using(state_dir) == []


def _background_server(home: Path) -> int:
    """The pid of the background Prefect server, which must be serving."""
    seen = BackgroundServer(home).look()
    assert seen.state is State.RUNNING, f"the background Prefect server is {seen.describe()}"
    return seen.record.process.pid


def _interrupted(run: Run, rc: int, out: str, err: str, signum: int, stage: str) -> dict:
    """Exit code, report, JUnit and the printed line of a run `signum` stopped in `stage`; its report."""
    assert rc == 128 + signum, f"exit {rc}\n{out}\n{err[-3000:]}"
    assert "Traceback" not in err
    report = json.loads(run.report.read_text())
    assert report["outcome"] == "interrupted" and report["signal"] == signal.Signals(signum).name
    assert stage in report["interrupted_stages"], report["interrupted_stages"]
    stopped = next(s for s in report["stages"] if s["name"] == stage)
    assert stopped["outcome"] == "interrupted"
    took = run.stage_seen_at + stopped["duration_s"] - run.signalled_at  # at most that long
    assert took <= STOP_BOUND_S, f"{stage} ended {took:.1f} s after the signal"  # the bound every stage keeps
    case = ET.parse(run.junit).getroot().find(f".//testcase[@name='{stage}']/error")
    assert case is not None and case.get("type") == "interrupted"
    [line] = [line for line in out.splitlines() if line.startswith(f"run {report['run_id']} interrupted by")]
    assert f"at {', '.join(report['interrupted_stages'])}; cleanup: " in line
    return report


def _slow_identity(name: str) -> None:
    """The emulator's status tick at 30 s: the MeshIdentity applied after this waits that long for Ready (install
    and demo do not wait for the tick)."""
    lifecycle.set_faults(name, tick_s=SLOW_TICK_S)


# A sandbox the run starts


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", ["cluster-start", "install-kong-mesh", "apply-mesh-identity",
                                   "connectivity-after-permission"])
def test_a_signal_stops_a_sandbox_run_which_deletes_its_sandbox_and_exits_130_or_143(tmp_path, prefect_home,
                                                                                      meshid_home, stage, signum):
    name = f"int-{uuid.uuid4().hex[:6]}"
    run = Run(tmp_path, prefect_home, "--target-name", name,
              *(NEVER_LETS_IN if stage == "connectivity-after-permission" else []))
    if stage == "apply-mesh-identity":
        run.stage_started("install-kong-mesh")
        _slow_identity(name)
    run.stage_started(stage)
    assert run.temporary_servers() == [], "a run uses the background server, not a temporary one"
    server = _background_server(meshid_home)
    run.send(signum)
    rc, out, err = run.finish()
    _interrupted(run, rc, out, err, signum, stage)
    assert f"cleanup: deleted cluster {name} (provider sandbox)" in out
    _gone(name)
    assert _background_server(meshid_home) == server, "the signal to the run left the background server serving"


# An existing cluster


def _snapshot(cluster: Cluster) -> dict[str, set[str]]:
    """What a run could leave on a cluster: namespaces, CRDs (and with them their CRs), helm releases, cluster-wide
    RBAC and webhooks, and anything labelled as meshid's."""
    kinds = {"namespaces": ("v1", "Namespace", ""), "crds": ("apiextensions.k8s.io/v1", "CustomResourceDefinition", ""),
             "releases": ("v1", "Secret", "owner=helm"),
             "clusterroles": ("rbac.authorization.k8s.io/v1", "ClusterRole", ""),
             "clusterrolebindings": ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", ""),
             "mutating": ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", ""),
             "validating": ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", ""),
             "meshid": ("v1", "ConfigMap", "app.kubernetes.io/managed-by=meshid")}
    found = {}
    for key, (api_version, kind, selector) in kinds.items():
        items, _ = cluster.list(api_version, kind, label_selector=selector)
        found[key] = {f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in items
                      if not o["metadata"].get("deletionTimestamp")}
    return found


@pytest.fixture(scope="module")
def existing(prefect_home):
    """An existing cluster (a sandbox of its own) and what is on it before any run."""
    info = lifecycle.up(f"int-ctx-{os.getpid()}", tick_s=0.5)
    cluster = Cluster(info.kubeconfig)
    try:
        yield info, cluster, _snapshot(cluster)
    finally:
        cluster.close()
        lifecycle.down(info.name)


def _context_run(tmp_path: Path, prefect_home: Path, info, *args: str) -> Run:
    return Run(tmp_path, prefect_home, "--target-name", f"ctx-{uuid.uuid4().hex[:6]}", "--provider", "context",
               "--kubeconfig", str(info.kubeconfig), "--chart-mirror", info.chart_repo_url, *args)


@pytest.mark.parametrize(("stage", "signum"), [("install-kong-mesh", signal.SIGINT),
                                               ("apply-mesh-identity", signal.SIGTERM),
                                               ("connectivity-after-permission", signal.SIGINT)],
                         ids=["install-kong-mesh-SIGINT", "apply-mesh-identity-SIGTERM",
                              "connectivity-after-permission-SIGINT"])
def test_a_signal_stops_a_run_on_an_existing_cluster_which_keeps_nothing_the_run_applied(tmp_path, prefect_home,
                                                                                         existing, stage, signum):
    """cluster-start only connects to an existing cluster, so the stages that change it are interrupted here."""
    info, cluster, before = existing
    run = _context_run(tmp_path, prefect_home, info, *(NEVER_LETS_IN if stage == "connectivity-after-permission"
                                                      else []))
    try:
        if stage == "apply-mesh-identity":
            run.stage_started("install-kong-mesh")
            _slow_identity(info.name)
        run.stage_started(stage)
        run.send(signum)
        rc, out, err = run.finish()
    finally:
        lifecycle.set_faults(info.name, tick_s=0.5)
    _interrupted(run, rc, out, err, signum, stage)
    assert _snapshot(cluster) == before


def test_a_second_signal_skips_the_cleanup_and_the_printed_command_finishes_it(tmp_path, prefect_home, existing):
    info, cluster, before = existing
    run = _context_run(tmp_path, prefect_home, info)
    run.stage_started("install-spire")
    run.send(signal.SIGTERM)
    run.stage_started("cleanup")
    run.send(signal.SIGINT)
    rc, out, err = run.finish()
    report = json.loads(run.report.read_text())
    command = f"meshid recover --run {report['run_id']} --runs-dir {run.runs_dir}"
    assert rc == 143 and "Traceback" not in err, err[-3000:]
    assert f"cleanup skipped by a second signal: finish it with `{command}`" in out
    left = Ledger.load(run.runs_dir / report["run_id"] / FILE)
    assert left.entries and left.run.state() is RunState.UNRECOVERED, "the cleanup was cut short"
    done = run.meshid(*command.split()[1:])
    assert done.returncode == 0 and f"run {report['run_id']} " in done.stdout, done.stdout + done.stderr
    assert "nothing to undo" not in done.stdout
    assert _snapshot(cluster) == before


# A run that died, and a run kept on purpose


def test_kill_9_leaves_an_unrecovered_run_that_preflight_names_and_recover_removes(tmp_path, prefect_home,
                                                                                    meshid_home):
    name = f"int-{uuid.uuid4().hex[:6]}"
    run = Run(tmp_path, prefect_home, "--target-name", name)
    run.stage_started("install-kong-mesh")
    assert run.temporary_servers() == []
    server = _background_server(meshid_home)
    run.proc.kill()
    run.proc.wait()
    assert _background_server(meshid_home) == server, "the background server outlives a killed run"
    assert name in [info.name for info in lifecycle.status()], "a killed run cleans up nothing itself"
    [listed] = json.loads(run.meshid("runs", "-o", "json").stdout)
    assert listed["state"] == "unrecovered"
    settings = MeshidSettings(runs_dir=run.runs_dir)
    ctx = RunContext.create(parse_params({"target": {"name": name}}), settings)
    out = StageOutput()
    preflight.run(ctx, out)
    [warning] = [c for c in out.checks if c.code == "MID090"]
    assert warning.failed and f"`meshid recover --run {listed['run_id']} --runs-dir {run.runs_dir}`" in \
        warning.message
    done = run.meshid("recover")
    assert done.returncode == 0 and f"run {listed['run_id']} ({name}, sandbox {name}): deleted cluster {name}" in \
        done.stdout, done.stdout + done.stderr
    _gone(name)
    again = run.meshid("recover")
    assert again.returncode == 0 and again.stdout.startswith("nothing to recover"), again.stdout
    assert Ledger.load(run.runs_dir / listed["run_id"] / FILE).run.state() is RunState.RECOVERED


def test_cleanup_never_keeps_an_interrupted_run_says_so_and_recover_run_undoes_it(tmp_path, prefect_home):
    name = f"int-{uuid.uuid4().hex[:6]}"
    run = Run(tmp_path, prefect_home, "--target-name", name, "--cleanup", "never")
    run.stage_started("install-kong-mesh")
    run.send(signal.SIGINT)
    rc, out, err = run.finish()
    report = _interrupted(run, rc, out, err, signal.SIGINT, "install-kong-mesh")
    command = f"meshid recover --run {report['run_id']} --runs-dir {run.runs_dir}"
    assert "cleanup: kept per cleanup policy never; ledger in" in out and f"`{command}` undoes it" in out
    assert name in [info.name for info in lifecycle.status()]
    assert run.meshid("recover").stdout.startswith("nothing to recover"), "kept on purpose: only undone when named"
    done = run.meshid(*command.split()[1:])
    assert done.returncode == 0 and f"deleted cluster {name}" in done.stdout, done.stdout + done.stderr
    _gone(name)


# Sandboxes whose owner is gone


def test_status_names_sandboxes_whose_owner_run_is_gone_and_down_all_stops_every_one(tmp_path, monkeypatch):
    require_private_netns()
    home = tmp_path / "home"
    home.mkdir()
    (home / "bin").symlink_to(lifecycle.binaries.home() / "bin")  # the built binaries, not a sandbox of anyone else
    monkeypatch.setenv("MESHID_HOME", str(home))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = lifecycle.up("orphan", tick_s=0.5, owner={"run_id": "r-dead", "pid": int(dead.stdout),
                                                      "start_ticks": 1})
    mine = Writer.current()
    lifecycle.up("owned", tick_s=0.5, owner={"run_id": "r-live", **mine.model_dump()})
    half = lifecycle.root() / "half"  # a start whose starter was killed before it wrote its state
    half.mkdir()
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", str(half / "kwok")],
                                start_new_session=True)
    status = subprocess.run([*MESHID, "sandbox", "status"], capture_output=True, text=True, timeout=60,
                            env=os.environ.copy()).stdout
    assert "run r-dead (gone: orphaned)" in status and f"run r-live (pid {mine.pid})" in status
    down = subprocess.run([*MESHID, "sandbox", "down", "--all"], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())
    assert down.returncode == 0 and "sandboxes down: half, orphan, owned" in down.stderr, down.stderr
    assert lifecycle.status() == [] and [p.name for p in lifecycle.root().iterdir() if p.is_dir()] == []
    assert leftover.wait(timeout=10) is not None and processes.using(orphan.state_dir) == []
