"""What a flow-starting command (`meshid run`, `meshid fleet`) does around its flow: Prefect's defaults, signals
handled, meshid's background Prefect server, and the lines and exit code of a command a signal stopped."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from meshid import LIBRARY_LOGGER, interrupt

if TYPE_CHECKING:
    from meshid.prefectserver import Handle


def prefect_defaults() -> None:
    """Prefect settings meshid needs unless the user set them, before Prefect is imported (it reads them then): no
    analytics (Prefect's SDK asks its server whether analytics are on, and falls back to this setting,
    prefect/_internal/analytics/service.py), and no SDK telemetry (on a terminal, Prefect's import prints a notice
    and queues onboarding events unless DO_NOT_TRACK is set, prefect/_internal/analytics/__init__.py); the library's
    loggers (`meshid.*`) among Prefect's extra loggers, whose records emitted inside a run go to that run's logs (the
    import's logging set-up gives them the API handler, prefect/logging/configuration.py)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", LIBRARY_LOGGER)


@contextmanager
def until_interrupted() -> Iterator[None]:
    """A flow-starting command: Prefect's defaults set before Prefect is imported (it reads them then), SIGINT and
    SIGTERM handled in the block (`meshid.interrupt`), which ends quietly on a stop while it waited for the Prefect
    server, and on a termination Prefect's flow engine raised before the flow's own handlers were in place."""
    prefect_defaults()
    with interrupt.signals_handled():
        try:
            yield
        except interrupt.Interrupted:
            pass  # no flow started: the caller says so
        except BaseException as exc:  # Prefect is imported by now; imported earlier it would miss collector_paused
            from prefect.exceptions import TerminationSignal

            if not isinstance(exc, TerminationSignal):
                raise
            # the engine sent the signal to this process again, and the handler recorded it


def background_server() -> Handle | None:
    """meshid's background Prefect server for a flow-starting command, unless the user set PREFECT_API_URL (then
    meshid starts nothing). Called after the input is validated and before Prefect is imported: a first call starts
    the server here, and its start overlaps the import; `flows.foreground` waits for it."""
    from meshid import prefectserver
    from meshid.settings import load_settings

    if "prefect" in sys.modules:  # an in-process caller (a test harness) imported it: its settings say it all
        from prefect.settings import get_current_settings

        if get_current_settings().api.url:
            return None
    elif prefectserver.configured_api_url():
        return None
    return prefectserver.BackgroundServer(load_settings().home).ensure()


def cleanup_line(runs_dir: Path, run_id: str, worker: str | None = None) -> str:
    """The run's cleanup, in one line, from its ledger (on the worker that ran it, for a fleet's worker runs)."""
    from meshid.ledger import FILE, Ledger

    path = runs_dir / run_id / FILE
    if not path.is_file():
        return f"cleanup: recorded on the machine that ran it ({worker or 'not here'}; `meshid runs` there)"
    run = Ledger.load(path).run
    return f"cleanup: {run.summary}" if run and run.summary else "cleanup: not recorded (see `meshid runs`)"


def interrupted_exit(what: str) -> int:
    """The exit code of a command a signal stopped; says so when nothing reported."""
    signum = interrupt.received()
    assert signum is not None
    if what:
        print(f"meshid: {what} was {interrupt.Interrupted(signum)} before it started; nothing to clean up",
              file=sys.stderr)
    return interrupt.exit_code(signum)
