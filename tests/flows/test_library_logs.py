"""The library's log records (`meshid.*`, at MESHID_LOG_LEVEL) reach the logs of the Prefect run they are emitted in."""

from __future__ import annotations

import logging
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

from meshid import LIBRARY_LOGGER
from meshid.errors import ExternalCallError
from meshid.polling import poll
from meshid.settings import load_settings

pytestmark = pytest.mark.prefect


@flow
def _polls_through_a_transient_error(what: str) -> str:
    from prefect.runtime import flow_run

    answers = iter([ExternalCallError("GET /stats", "HTTP 503", transient=True), (True, "ready", None)])

    def read():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    poll(what, read, timeout_s=5, interval_s=0.01)
    return str(flow_run.id)


def test_a_library_log_record_is_in_the_flow_runs_logs():
    assert LIBRARY_LOGGER in PREFECT_LOGGING_EXTRA_LOGGERS.value()
    library = logging.getLogger(LIBRARY_LOGGER)
    level = library.level
    what = f"stats {uuid.uuid4().hex[:8]}"
    try:
        load_settings(log_level="DEBUG")  # poll logs the transient errors it rides out at DEBUG
        flow_run_id = _polls_through_a_transient_error(what)
    finally:
        library.setLevel(level)
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    assert [(log.name, log.level, log.message) for log in logs if log.name.startswith(LIBRARY_LOGGER)] == [
        ("meshid.polling", logging.DEBUG,
         f"waiting for {what}: a transient error, polled through: GET /stats failed: HTTP 503")]
