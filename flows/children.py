"""The flow runs a fleet dispatched to workers, read together: `ChildReader`.

Each job watches its child run until it ends. Read one by one, a fleet at concurrency N asks the API N times per poll;
read together, once: whichever job's read falls due first reads every watched child in one request, and the jobs
waiting meanwhile take their child from that answer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun


class ChildReader:
    """Reads of the watched children, at most one per `interval_s`, each for all of them."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._changed = threading.Condition()
        self._watched: Counter[UUID] = Counter()  # children with a read waiting, and how many
        self._done = 0  # reads that ended
        self._reading = False
        self._last = float("-inf")  # when the last read ended
        self._runs: dict[UUID, FlowRun] = {}
        self._error: Exception | None = None

    def read(self, client: SyncPrefectClient, child: UUID) -> FlowRun:
        """`child` as the next read that starts after this call finds it (at most one read per interval_s); raises
        what that read raised (an API that does not answer: the caller rides it out)."""
        with self._changed:
            self._watched[child] += 1
            try:
                wanted = self._done + (2 if self._reading else 1)  # a read under way began before this call
                while self._done < wanted:
                    due = self._last + self.interval_s - time.monotonic()
                    if self._reading or due > 0:
                        self._changed.wait(None if self._reading else due)
                    else:
                        self._read_all(client)
                if self._error is not None:
                    raise self._error
                found = self._runs.get(child)
            finally:
                self._watched[child] -= 1
                if not self._watched[child]:
                    del self._watched[child]
        return found if found is not None else client.read_flow_run(child)  # gone from the filter: say why

    def _read_all(self, client: SyncPrefectClient) -> None:
        """One read of every watched child, outside the lock; the waiting jobs are woken with its answer."""
        ids = list(self._watched)
        answer: dict[UUID, FlowRun] = {}
        error: Exception | None = None
        self._reading = True
        self._changed.release()
        try:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
            answer = {run.id: run for run in runs}
        except Exception as exc:  # noqa: BLE001 - handed to every job that waited for this read
            error = exc
        finally:
            self._changed.acquire()
            self._runs, self._error = answer, error
            self._done, self._reading, self._last = self._done + 1, False, time.monotonic()
            self._changed.notify_all()
