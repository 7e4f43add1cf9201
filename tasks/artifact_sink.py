"""Artifacts published off a run's critical path: queued to one background thread, created in order.

Every artifact is a call to the Prefect API (20 to 40 ms on a local server, and CPU of the server's): made inline,
they would delay every next stage.
Inside `publishing()` (the body of a flow that runs stages), `markdown`, `table` and `progress` queue the artifact,
linked to the calling task run and flow run as Prefect's own functions link it, and return at once; the end of
`publishing()` waits, bounded, until the queue is empty, so a finished flow run has all its artifacts. Outside
`publishing()` they publish at once. An artifact the API refuses is a warning, never a failed stage: the run's outcome
is the cluster's.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import Artifact, MarkdownArtifact, ProgressArtifact, TableArtifact, update_progress_artifact
from prefect.utilities.context import get_task_and_flow_run_ids

from meshid.stages.runner import describe

DRAIN_TIMEOUT_S = 60.0
PROGRESS_INTERVAL_S = 5.0


class ArtifactSink:
    """One thread that creates a flow run's artifacts in the order they were queued."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self._context = contextvars.copy_context()  # the flow run's: its API client, settings and logger
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshid-artifacts")
        self._queued: list[concurrent.futures.Future] = []
        self._before_close: list[Callable[[], None]] = []

    def before_close(self, flush: Callable[[], None]) -> None:
        """Call `flush` when the sink closes, before it drains (a coalesced progress move still waiting)."""
        self._before_close.append(flush)

    def submit(self, what: str, call: Callable[[], Any]) -> None:
        """Queue `call`; a failure is recorded in `failures` and logged as a warning naming `what`."""
        def job() -> None:
            try:
                call()
            except Exception as exc:
                self.failures.append(f"{what}: {describe(exc)}")
                get_run_logger().warning("artifact not published: %s", self.failures[-1])

        self._queued.append(self._executor.submit(self._context.run, job))

    def close(self) -> None:
        """Wait for the queue, at most DRAIN_TIMEOUT_S; whatever is still queued then is dropped and recorded."""
        for flush in self._before_close:
            flush()
        _, late = concurrent.futures.wait(self._queued, timeout=DRAIN_TIMEOUT_S)
        if late:
            self.failures.append(f"{len(late)} artifact(s) still queued after {DRAIN_TIMEOUT_S:.0f} s, dropped")
            get_run_logger().warning("artifacts not published: %s", self.failures[-1])
        self._executor.shutdown(wait=not late, cancel_futures=True)


_SINK: contextvars.ContextVar[ArtifactSink | None] = contextvars.ContextVar("meshid_artifact_sink", default=None)


@contextmanager
def publishing() -> Iterator[ArtifactSink]:
    """Queue the artifacts of this flow run's body (and of the tasks it submits) until the block ends."""
    sink = ArtifactSink()
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)
        sink.close()


def _publish(what: str, call: Callable[[], Any]) -> None:
    sink = _SINK.get()
    if sink is None:
        call()
    else:
        sink.submit(what, call)


def _linked(artifact: Artifact) -> Artifact:
    """`artifact` linked to the calling task run and flow run (the sink's thread runs outside the task)."""
    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    return artifact.model_copy(update={"task_run_id": task_run_id, "flow_run_id": flow_run_id})


def markdown(key: str, text: str, description: str) -> None:
    """A markdown artifact under `key`."""
    artifact = _linked(MarkdownArtifact(key=key, markdown=text, description=description))
    _publish(f"markdown {key}", lambda: artifact.create(_sync=True))


def table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    """A table artifact under `key`, one row per dict."""
    artifact = _linked(TableArtifact(key=key, table=rows, description=description))
    _publish(f"table {key}", lambda: artifact.create(_sync=True))


class _CoalescedProgress:
    """Moves of one progress artifact through a sink; moves less than PROGRESS_INTERVAL_S after the last one sent
    wait for a timer, and only the latest of them is sent."""

    def __init__(self, sink: ArtifactSink, key: str, created: list[UUID]) -> None:
        self._sink, self._key, self._created = sink, key, created
        self._lock = threading.Lock()
        self._latest: float | None = None  # the move not sent yet
        self._timed = False  # a timer will send it
        self._sent_at = float("-inf")
        sink.before_close(self.send)

    def move(self, percent: float) -> None:
        """Move to `percent`: now when the interval is over or at 100 %, else when it is over."""
        with self._lock:
            self._latest = percent
            wait = self._sent_at + PROGRESS_INTERVAL_S - time.monotonic()
            if percent < 100 and wait > 0:
                if not self._timed:
                    self._timed = True
                    timer = threading.Timer(wait, self.send)
                    timer.daemon = True
                    timer.start()
                return
        self.send()

    def send(self) -> None:
        """Queue the latest move, if one waits."""
        with self._lock:
            if self._latest is None:
                return
            percent, self._latest = self._latest, None
            self._timed, self._sent_at = False, time.monotonic()

        def call() -> None:
            if self._created:  # else its creation failed, and that is recorded already
                update_progress_artifact(self._created[0], percent, _sync=True)

        self._sink.submit(f"progress {self._key} at {percent:.0f} %", call)


def progress(key: str, description: str) -> Callable[[float], None]:
    """A progress artifact at 0 %; returns the function that moves it to a percentage. Inside `publishing()`, moves
    closer than PROGRESS_INTERVAL_S are coalesced (the latest is sent when the interval is over, 100 % at once): a
    quick series of stages is a few writes, and a slow stage never hides the one before it for long."""
    artifact = _linked(ProgressArtifact(key=key, progress=0.0, description=description))
    created: list[UUID] = []
    _publish(f"progress {key}", lambda: created.append(artifact.create(_sync=True).id))
    sink = _SINK.get()
    if sink is not None:
        return _CoalescedProgress(sink, key, created).move

    def update(percent: float) -> None:
        if created:
            update_progress_artifact(created[0], percent, _sync=True)

    return update
