"""Prefect settings for a flow run its caller watches in its own process (`meshid run`, `meshid fleet`, a benchmark),
as opposed to a deployment run a worker starts."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.context import refresh_global_settings_context
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

from meshid.prefectserver import API_URL_ENV, Handle
from meshid.redact import redact

HEARTBEAT_ENV = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.name  # the environment variable that sets it


@contextmanager
def foreground(server: Handle | None = None) -> Iterator[None]:
    """Run flows in this block on `server` (meshid's background server, `meshid.prefectserver`), if given, and
    without flow-run heartbeats, unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY is set.

    Heartbeats let the server mark a run crashed when the process running it died unseen (zombie detection, for runs
    a worker started). A foreground run's caller sees its own process end; and every flow run, each fleet target's
    too, waits at its end for the heartbeat thread's next one-second wake-up, a second per run for nothing.
    """
    if server is not None:
        _use(server)
    if os.environ.get(HEARTBEAT_ENV):
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _use(server: Handle) -> None:
    """Point Prefect at the background server once it answers, unless Prefect's settings name a server after all:
    one the user set where meshid does not look before Prefect is imported (a .env file, prefect.toml). Then theirs
    wins, and a server this call started for nothing is stopped again."""
    theirs = get_current_settings().api.url
    if theirs:
        if server.started:
            server.server.stop()
        print(f"meshid: Prefect's settings name a server ({API_URL_ENV}={redact(theirs)}): using it", file=sys.stderr)
        return
    os.environ[API_URL_ENV] = server.ready().api_url
    refresh_global_settings_context()  # Prefect read the environment when it was imported
