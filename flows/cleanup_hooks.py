"""The flow hook of a cancelled or crashed run: finish its cleanup from the ledgers of the runs it wrote.

Under a worker, a cancelled run first gets SIGTERM and cleans up itself (`meshid.interrupt`); Prefect then runs the
`on_cancellation` hooks, and `on_crashed` ones when the process died without reporting (killed after the worker's
grace period, or by anything else), in the worker's hook process once the flow run's process is gone
(prefect/runner/_cancellation_manager.py, _flow_run_executor.py). This hook takes the path every cleanup takes,
`meshid.recovery`: a run that cleaned up is left alone, one that did not is cleaned up now.
"""

from __future__ import annotations

from typing import Any

from prefect.logging.loggers import flow_run_logger

from meshid import recovery
from meshid.settings import load_settings


def finish_cleanup(flow: Any, flow_run: Any, state: Any) -> None:
    """on_cancellation / on_crashed: clean up every unfinished run of this flow run; each line goes to its log."""
    logger = flow_run_logger(flow_run, flow)
    settings = load_settings()
    for line in recovery.recover_flow_run(settings.runs_dir, settings, str(flow_run.id), by=f"{state.name} hook"):
        logger.info("cleanup after %s: %s", state.name, line)
