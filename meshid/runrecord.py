"""What recovery needs to know of a run, kept in its ledger: who and where, which process writes it, how it ended.

No secrets: a kubeconfig is a path (for a Prefect Secret block, the 0600 file the run wrote it to), never its content.
The writer is a pid and that process's start time, so "the writer is gone" stays exact when the pid is reused.
"""

from __future__ import annotations

import os
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Writer(BaseModel):
    """A process: its pid and its start time in clock ticks after boot (/proc/<pid>/stat field 22, proc(5))."""

    model_config = ConfigDict(frozen=True)

    pid: int
    start_ticks: int

    @classmethod
    def current(cls) -> Writer:
        """This process."""
        pid = os.getpid()
        return cls(pid=pid, start_ticks=_start_ticks(pid) or 0)

    @classmethod
    def of(cls, pid: int) -> Writer | None:
        """The live process `pid`; None when there is none."""
        ticks = _start_ticks(pid)
        return None if ticks is None else cls(pid=pid, start_ticks=ticks)

    def alive(self) -> bool:
        """Whether this very process still runs (not a zombie, and not another process that got its pid)."""
        return _start_ticks(self.pid) == self.start_ticks

    def is_current(self) -> bool:
        """Whether this is the calling process."""
        return self == Writer.current()


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (fields[0] is field 3, the state; field N is
    fields[N - 3]); None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    """The start time (field 22) of a live process, None when there is none (or only its zombie)."""
    fields = proc_stat(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


class Cleanup(StrEnum):
    """How a run's cleanup ended."""

    DONE = "done"  # nothing the run made is left
    KEPT = "kept"  # kept on purpose (cleanup policy)
    INCOMPLETE = "incomplete"  # something is left: a second signal skipped the cleanup, or an undo failed


class RunState(StrEnum):
    """What `meshid runs` shows for a run."""

    RUNNING = "running"
    PASSED = "passed"
    UNCHANGED = "unchanged"  # passed, and found everything as asked
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KEPT = "kept"
    UNRECOVERED = "unrecovered"  # unfinished, and its writer is gone: `meshid recover` finishes it
    RECOVERED = "recovered"


class RunRecord(BaseModel):
    """One run: its target (as given), where its cluster is, its writer, and how it ended once it has."""

    run_id: str
    target: str
    provider: str
    cluster: str  # sandbox, minikube profile or kind cluster name (for `context`: the target name)
    kubeconfig: str | None = None  # provider `context`: the kubeconfig file's path
    context: str | None = None
    server: str | None = None  # provider `context`: the API server the kubeconfig's context points at
    trust_domain: str
    cleanup_policy: str
    writer: Writer
    flow_run_id: str | None = None
    root_flow_run_id: str | None = None  # the flow run of the writer's process (a fleet's, for its targets)
    started_at: datetime
    outcome: str | None = None  # passed, failed, interrupted
    stage: str | None = None  # the failed or interrupted stage
    signal: str | None = None
    cleanup: Cleanup | None = None
    cleaned_by: str | None = None  # "run", or what recovered it
    summary: str | None = None  # what the cleanup did or left, one line
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """Cleanup is done, or the run was kept on purpose: nothing to recover."""
        return self.cleanup in (Cleanup.DONE, Cleanup.KEPT)

    def state(self) -> RunState:
        """The run's state now (reads /proc for its writer while unfinished)."""
        if self.cleanup is Cleanup.KEPT:
            return RunState.KEPT
        if self.cleanup is Cleanup.DONE:
            return RunState(self.outcome) if self.cleaned_by == "run" and self.outcome else RunState.RECOVERED
        return RunState.RUNNING if self.writer.alive() else RunState.UNRECOVERED

    def same_cluster(self, other: RunRecord) -> bool:
        """Whether both runs work on the same cluster."""
        return self.cluster_key() == other.cluster_key()

    def cluster_key(self) -> tuple[str, ...]:
        """The API server (or kubeconfig file and context) of an existing cluster; provider and name of the rest."""
        if self.provider != "context":
            return (self.provider, self.cluster)
        if self.server:
            return ("context", self.server)
        return ("context", os.path.realpath(self.kubeconfig or ""), self.context or "")
