"""Run records in ledgers: the writer's identity, run states, what recovery selects and plans, idempotent recovery
of a run that applied nothing, and `meshid runs` / `meshid recover` on fabricated runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meshid import recovery
from meshid.errors import InputError
from meshid.ledger import FILE, AppliedObject, AppliedRelease, CreatedCluster, Ledger
from meshid.runrecord import Cleanup, RunRecord, RunState, Writer
from meshid.settings import MeshidSettings


def gone_writer() -> Writer:
    """A process that has ended (its pid is free, or taken by another process with another start time)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return Writer(pid=int(done.stdout), start_ticks=1)


def record(run_id: str, writer: Writer, **fields) -> RunRecord:
    base = {"run_id": run_id, "target": "t", "provider": "sandbox", "cluster": "t",
            "trust_domain": "example.org", "cleanup_policy": "always", "writer": writer,
            "started_at": datetime(2026, 1, 1, tzinfo=UTC)}
    return RunRecord(**{**base, **fields})


def write(runs_dir: Path, run: RunRecord, *entries) -> Ledger:
    ledger = Ledger(path=runs_dir / run.run_id / FILE)
    for entry in entries:
        ledger.record(entry)
    ledger.set_run(run)
    return ledger


def test_the_writer_is_this_process_until_it_is_gone_and_a_reused_pid_is_not_it():
    me = Writer.current()
    assert me.alive() and me.is_current() and me.start_ticks > 0
    assert not Writer(pid=me.pid, start_ticks=me.start_ticks + 1).alive(), "same pid, another process"
    assert not gone_writer().alive()


def test_run_states_follow_the_cleanup_and_the_writer():
    dead, me = gone_writer(), Writer.current()
    assert record("a", me).state() is RunState.RUNNING
    assert record("a", dead).state() is RunState.UNRECOVERED
    assert record("a", dead, outcome="interrupted", cleanup=Cleanup.INCOMPLETE).state() is RunState.UNRECOVERED
    assert record("a", dead, outcome="interrupted", cleanup=Cleanup.DONE, cleaned_by="run").state() is \
        RunState.INTERRUPTED
    assert record("a", dead, outcome="failed", cleanup=Cleanup.DONE, cleaned_by="run").state() is RunState.FAILED
    assert record("a", dead, outcome="passed", cleanup=Cleanup.KEPT, cleaned_by="run").state() is RunState.KEPT
    assert record("a", dead, cleanup=Cleanup.DONE, cleaned_by="meshid recover").state() is RunState.RECOVERED


def test_context_runs_are_the_same_cluster_by_api_server_else_by_kubeconfig_and_context(tmp_path):
    one = record("a", gone_writer(), provider="context", kubeconfig="/k1", context="c", server="https://10.0.0.1")
    other_file = record("b", gone_writer(), provider="context", kubeconfig="/k2", context="x",
                        server="https://10.0.0.1")
    elsewhere = record("c", gone_writer(), provider="context", kubeconfig="/k1", context="c",
                       server="https://10.0.0.2")
    assert one.same_cluster(other_file) and not one.same_cluster(elsewhere)
    assert record("d", gone_writer(), cluster="x").same_cluster(record("e", gone_writer(), cluster="x"))
    assert not record("d", gone_writer(), cluster="x").same_cluster(record("e", gone_writer(), provider="kind",
                                                                           cluster="x"))


def test_the_ledger_file_holds_the_record_and_every_kind_of_entry(tmp_path):
    run = record("r1", Writer.current())
    ledger = write(tmp_path, run, CreatedCluster("sandbox", "t"), AppliedRelease("kong-mesh", "kms", None),
                   AppliedObject("v1", "Namespace", "demo", None, True))
    ledger.update_run(outcome="interrupted", stage="install-kong-mesh")
    data = json.loads((tmp_path / "r1" / FILE).read_text())
    assert [e["type"] for e in data["entries"]] == ["CreatedCluster", "AppliedRelease", "AppliedObject"]
    assert data["run"]["writer"] == {"pid": os.getpid(), "start_ticks": run.writer.start_ticks}
    loaded = Ledger.load(tmp_path / "r1" / FILE)
    assert loaded.entries == ledger.entries and loaded.run.stage == "install-kong-mesh"
    assert loaded.created_cluster() == CreatedCluster("sandbox", "t")
    loaded.clear()
    assert Ledger.load(tmp_path / "r1" / FILE).entries == []


def test_recovery_selects_unrecovered_runs_and_names_earlier_ones_on_the_same_cluster(tmp_path):
    dead = gone_writer()
    write(tmp_path, record("1-dead", dead), CreatedCluster("sandbox", "t"))
    write(tmp_path, record("2-running", Writer.current()))
    write(tmp_path, record("3-done", dead, cleanup=Cleanup.DONE, cleaned_by="run", outcome="passed"))
    write(tmp_path, record("4-other-cluster", dead, cluster="u"))
    (tmp_path / "5-old-format").mkdir()
    (tmp_path / "5-old-format" / FILE).write_text("[]")  # a ledger from before run records: not listed
    assert [ledger.run.run_id for ledger in recovery.runs(tmp_path)] == ["1-dead", "2-running", "3-done",
                                                                         "4-other-cluster"]
    assert [ledger.run.run_id for ledger in recovery.select(tmp_path, None)] == ["1-dead", "4-other-cluster"]
    assert [r.run_id for r in recovery.unrecovered_on(tmp_path, record("6-new", Writer.current()))] == ["1-dead"]
    with pytest.raises(InputError) as err:
        recovery.select(tmp_path, "nope")
    assert err.value.field == "--run"


def test_the_plan_undoes_newest_first_and_a_created_cluster_stands_for_everything_in_it(tmp_path):
    applied = write(tmp_path, record("a", gone_writer(), provider="context"),
                    AppliedObject("v1", "Namespace", "demo", None, True),
                    AppliedRelease("kong-mesh", "kms", None), AppliedRelease("spire", "spire", 3),
                    AppliedObject("kuma.io/v1alpha1", "Mesh", "default", None, False))
    assert recovery.plan(applied) == ["roll helm release spire/spire back to revision 3",
                                      "uninstall helm release kms/kong-mesh", "delete Namespace demo"]
    created = write(tmp_path, record("b", gone_writer()), CreatedCluster("kind", "t"),
                    AppliedObject("v1", "Namespace", "demo", None, True))
    assert recovery.plan(created) == ["delete kind cluster t"]


def test_recovering_a_run_that_applied_nothing_marks_it_done_once(tmp_path):
    ledger = write(tmp_path, record("a", gone_writer()))
    settings = MeshidSettings(runs_dir=tmp_path)
    first = recovery.recover(ledger, settings)
    assert first.problems == [] and first.note is None
    assert Ledger.load(ledger.path).run.state() is RunState.RECOVERED
    again = recovery.recover(ledger, settings)
    assert again.note.startswith("nothing to do: cleaned up by meshid recover")


def test_a_run_whose_writer_still_runs_is_left_alone(tmp_path):
    parent = int(Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[19])
    ledger = write(tmp_path, record("a", Writer(pid=os.getppid(), start_ticks=parent)))
    done = recovery.recover(ledger, MeshidSettings(runs_dir=tmp_path))
    assert done.busy and "still running" in done.note
    assert Ledger.load(ledger.path).run.cleanup is None


def test_the_recover_command_names_the_runs_dir_unless_it_is_the_default():
    assert recovery.recover_command("r1", Path("runs")) == "meshid recover --run r1"
    assert recovery.recover_command("r1", Path("/tmp/x")) == "meshid recover --run r1 --runs-dir /tmp/x"


def _meshid(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_runs_lists_states_and_recover_exits_0_when_all_is_clean_2_on_an_unknown_run(tmp_path):
    write(tmp_path, record("1-dead", gone_writer()))
    write(tmp_path, record("2-kept", gone_writer(), outcome="passed", cleanup=Cleanup.KEPT, cleaned_by="run",
                           summary="kept per cleanup policy never"))
    listed = json.loads(_meshid("runs", "--runs-dir", str(tmp_path), "-o", "json").stdout)
    assert [(r["run_id"], r["state"]) for r in listed] == [("1-dead", "unrecovered"), ("2-kept", "kept")]
    dry = _meshid("recover", "--runs-dir", str(tmp_path), "--dry-run")
    assert dry.returncode == 0 and "run 1-dead (t, sandbox t): nothing to undo" in dry.stdout
    assert "2-kept" not in dry.stdout, "a run kept on purpose is only undone when named"
    done = _meshid("recover", "--runs-dir", str(tmp_path))
    assert done.returncode == 0 and "1-dead" in done.stdout
    again = _meshid("recover", env={"MESHID_RUNS_DIR": str(tmp_path)})
    assert again.returncode == 0 and again.stdout.startswith("nothing to recover")
    unknown = _meshid("recover", "--runs-dir", str(tmp_path), "--run", "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith("meshid: --run: no run nope")


UNREACHABLE = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: "s3cr3t-token-value"}}]
contexts: [{name: only, context: {cluster: c, user: u}}]
current-context: only
"""


def test_recover_exits_1_naming_what_it_could_not_undo_and_the_fix_and_keeps_the_run_unrecovered(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE)
    run = record("ctx-1", gone_writer(), provider="context", cluster="t", kubeconfig=str(kubeconfig), context="only")
    write(tmp_path / "runs", run, AppliedObject("v1", "Namespace", "kong-mesh-demo", None, True))
    done = _meshid("recover", "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "could not undo: the cluster does not answer, so nothing was undone" in done.stdout
    assert "fix: make the cluster reachable" in done.stdout and "meshid recover --run ctx-1" in done.stdout
    assert "s3cr3t-token-value" not in done.stdout + done.stderr
    ledger = Ledger.load(tmp_path / "runs" / "ctx-1" / FILE)
    assert ledger.run.state() is RunState.UNRECOVERED and len(ledger.entries) == 1
