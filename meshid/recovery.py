"""Finishing what runs left, from their ledgers: the one cleanup path of a run's own cleanup stage, the flow hooks
(`on_cancellation`, `on_crashed`) and `meshid recover`.

`clean_up` deletes the throwaway cluster a run created, or undoes exactly what it applied to an existing cluster.
`recover` finds runs that never finished and whose writer is gone, and cleans each up under a lock of its own, so two
recoveries at once (or one run twice) do the work once.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from meshid import checks, filelock, interrupt
from meshid.checks import Judgement
from meshid.errors import ExternalCallError, InputError, MeshidError
from meshid.ledger import FILE, AppliedObject, AppliedRelease, Ledger
from meshid.models import GuideParams, ProviderName, Target
from meshid.results import Touched
from meshid.runrecord import Cleanup, RunRecord, RunState
from meshid.settings import MeshidSettings
from meshid.stages.run_context import RUN_ENV, RunContext
from meshid.stages.output import StageOutput
from meshid.undo import undo

DEFAULT_RUNS_DIR = MeshidSettings.model_fields["runs_dir"].default
LOCK_FILE = "recover.lock"
LOCK_TIMEOUT_S = 600.0
LEFTOVER_GRACE_S = 5.0


def recover_command(run_id: str, runs_dir: Path | None = None) -> str:
    """The command that finishes the cleanup of a run (naming its runs dir unless it is the default)."""
    where = f" --runs-dir {runs_dir}" if runs_dir is not None and Path(runs_dir) != DEFAULT_RUNS_DIR else ""
    return f"meshid recover --run {run_id}{where}"


# The cleanup path


def clean_up(ctx: RunContext, out: StageOutput) -> list[str]:
    """Delete the throwaway cluster the run created, or undo what it applied; return what is left (empty: nothing).

    A cluster being created counts (it is recorded first): an interrupted start is deleted as well.
    """
    timeout_s = ctx.params.timeouts.cleanup_s
    created = ctx.ledger.created_cluster()
    if created is not None:
        # deleting needs only the cluster's name: an interrupted start has no handle yet
        handle = ctx.handle or ctx.provider.handle(ctx.run_dir / "no-kubeconfig", None)
        try:
            ctx.provider.delete(handle, timeout_s)
        except ExternalCallError as exc:
            return [str(exc)]
        out.touch("Cluster", None, created.name, "deleted", f"provider {created.provider}")
        ctx.ledger.clear()  # everything else the run applied was inside it
        return []
    if not ctx.ledger.entries:
        return []
    try:
        ctx.cluster.version()  # one clear problem, not one per change, when the cluster does not answer
    except ExternalCallError as exc:
        return [f"the cluster does not answer, so nothing was undone: {exc}"]
    return undo(ctx.cluster, ctx.helm, ctx.ledger, timeout_s, out)


@checks.evaluates(checks.MID070, checks.MID081)
def nothing_left(problems: list[str], done: str) -> Judgement:
    """MID070 (a run's cleanup) and MID081 (a rollout's rollback): nothing it had to remove is left (`problems` says
    what is); `done` says what it did."""
    return not problems, "; ".join(problems) or done


def summary(touched: list[Touched], problems: list[str] = ()) -> str:
    """What a cleanup did, and what it could not undo, in one line."""
    left = f"; {len(problems)} problem(s) left, the first: {problems[0]}" if problems else ""
    return _done(touched) + left


def _done(touched: list[Touched]) -> str:
    if not touched:
        return "nothing to clean up"
    cluster = next((t for t in touched if t.kind == "Cluster" and t.action == "deleted"), None)
    if cluster is not None:
        return f"deleted cluster {cluster.name} ({cluster.detail})"
    releases = [t.name for t in touched if t.kind == "HelmRelease"]
    objects = Counter(t.action for t in touched if t.kind != "HelmRelease")
    parts = [f"{len(releases)} helm release(s) uninstalled or rolled back ({', '.join(releases)})"] if releases else []
    parts += [f"{n} object(s) {action}" for action, n in sorted(objects.items())]
    return "; ".join(parts)


def finish(ledger: Ledger, cleanup: Cleanup, by: str, line: str) -> None:
    """Mark the run's cleanup ended in its ledger."""
    ledger.update_run(cleanup=cleanup, cleaned_by=by, summary=line, finished_at=datetime.now(UTC))


# Finding runs


def runs(runs_dir: Path) -> list[Ledger]:
    """The ledgers of every run under `runs_dir` that has a record, oldest first."""
    found = []
    for path in sorted(Path(runs_dir).glob(f"*/{FILE}")):
        try:
            ledger = Ledger.load(path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a run's ledger (or one this version cannot read)
        if ledger.run is not None:
            found.append(ledger)
    return found


def unrecovered_on(runs_dir: Path, run: RunRecord) -> list[RunRecord]:
    """Earlier runs on the same cluster as `run` that never finished and whose writer is gone."""
    return [other.run for other in runs(runs_dir) if other.run.run_id != run.run_id and other.run.same_cluster(run)
            and other.run.state() is RunState.UNRECOVERED]


# Recovering


@dataclass
class Recovery:
    """What recovering one run did (or, dry, would do)."""

    run: RunRecord
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str | None = None  # why nothing was done
    busy: bool = False  # its writer still runs: left alone

    def lines(self, runs_dir: Path | None = None) -> list[str]:
        """For the operator: one line, then a line per problem with the fix."""
        run = self.run
        head = f"run {run.run_id} ({run.target}, {run.provider} {run.cluster}): "
        if self.note:
            return [head + self.note]
        done = "; ".join(self.actions) or ("nothing undone" if self.problems else "nothing to undo")
        lines = [head + done]
        lines += [f"  could not undo: {p}" for p in self.problems]
        if self.problems:
            lines.append(f"  fix: make the cluster reachable (or remove these by hand), then run "
                         f"`{recover_command(run.run_id, runs_dir)}` again")
        return lines


def select(runs_dir: Path, run_id: str | None) -> list[Ledger]:
    """The ledgers to recover: `run_id`'s (InputError when there is none), else every unrecovered run's."""
    found = runs(runs_dir)
    if run_id is None:
        return [ledger for ledger in found if ledger.run.state() is RunState.UNRECOVERED]
    chosen = [ledger for ledger in found if ledger.run.run_id == run_id]
    if not chosen:
        raise InputError("--run", f"no run {run_id} under {runs_dir}",
                         "give a run id that `meshid runs` lists, or the --runs-dir the run wrote to")
    return chosen


def recover(ledger: Ledger, settings: MeshidSettings, dry_run: bool = False, by: str = "meshid recover",
            include_kept: bool = False) -> Recovery:
    """Clean up one run from its ledger, under the run's lock; `include_kept` also undoes a run kept on purpose."""
    assert ledger.path is not None and ledger.run is not None
    run_dir = ledger.path.parent
    with filelock.held(run_dir / LOCK_FILE, LOCK_TIMEOUT_S, "another recovery of this run"):
        ledger = Ledger.load(ledger.path)  # as it is now that we hold the lock
        run = ledger.run
        if run.cleanup is Cleanup.DONE:
            return Recovery(run, note=f"nothing to do: cleaned up by {run.cleaned_by} ({run.summary})")
        if run.cleanup is Cleanup.KEPT and not include_kept:
            return Recovery(run, note=f"kept on purpose: `{recover_command(run.run_id, run_dir.parent)}` undoes it")
        if run.writer.alive() and not run.writer.is_current():
            return Recovery(run, note=f"still running (pid {run.writer.pid}): not touched; stop it first (Ctrl-C, "
                                      "or cancel its flow run), it cleans up itself", busy=True)
        if dry_run:
            return Recovery(run, actions=["would " + line for line in plan(ledger)] or ["nothing to undo"])
        _stop_leftovers(run.run_id)
        ctx = _context(ledger, settings)
        out = StageOutput()
        with interrupt.shielded():
            try:
                problems = clean_up(ctx, out)
            except MeshidError as exc:  # e.g. the kubeconfig is gone: named, the run stays unrecovered
                problems = [str(exc)]
        finish(ledger, Cleanup.INCOMPLETE if problems else Cleanup.DONE, by, summary(out.touched, problems))
        return Recovery(run, actions=[_done(out.touched)] if out.touched else [], problems=problems)


def plan(ledger: Ledger) -> list[str]:
    """What cleaning up the run would do, newest change first."""
    created = ledger.created_cluster()
    if created is not None:
        return [f"delete {created.provider} cluster {created.name}"]
    lines = []
    for entry in reversed(ledger.entries):
        if isinstance(entry, AppliedRelease):
            lines.append(f"uninstall helm release {entry.namespace}/{entry.name}" if entry.previous_revision is None
                         else f"roll helm release {entry.namespace}/{entry.name} back to revision "
                              f"{entry.previous_revision}")
        elif isinstance(entry, AppliedObject) and entry.created:
            where = f"{entry.namespace}/{entry.name}" if entry.namespace else entry.name
            lines.append(f"delete {entry.kind} {where}")
    return lines


def recover_flow_run(runs_dir: Path, settings: MeshidSettings, flow_run_id: str, by: str) -> list[str]:
    """Clean up every run a flow run wrote (its own, or its fleet targets') that did not finish; lines to log."""
    lines = []
    for ledger in runs(runs_dir):
        if flow_run_id in (ledger.run.flow_run_id, ledger.run.root_flow_run_id):
            lines += recover(ledger, settings, by=by).lines(runs_dir)
    return lines or [f"no run of flow run {flow_run_id} under {runs_dir}"]


def recover_targets(runs_dir: Path, settings: MeshidSettings, targets: set[str], by: str) -> list[Recovery]:
    """Recover the unrecovered runs of these targets (by name)."""
    return [recover(ledger, settings, by=by) for ledger in runs(runs_dir)
            if ledger.run.target in targets and ledger.run.state() is RunState.UNRECOVERED]


def _context(ledger: Ledger, settings: MeshidSettings) -> RunContext:
    """The run's context rebuilt from its record: provider, cluster handle and ledger (no parameters beyond)."""
    run = ledger.run
    provider = ProviderName(run.provider)
    target = Target(name=run.target, provider=provider, cluster=run.cluster if provider is not ProviderName.CONTEXT
                    else None, kubeconfig=run.kubeconfig, context=run.context)
    params = GuideParams(target=target, trust_domain=run.trust_domain)
    ctx = RunContext(params=params, settings=settings, run_id=run.run_id, run_dir=ledger.path.parent, ledger=ledger)
    return ctx.on(ctx.provider.handle(Path(run.kubeconfig), run.context, owned=False)) if run.kubeconfig else ctx


def _stop_leftovers(run_id: str) -> None:
    """End the subprocesses a dead writer left running (a helm upgrade goes on without its parent)."""
    marker = f"{RUN_ENV}={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + LEFTOVER_GRACE_S
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
            time.sleep(0.05)
