"""Prefect settings for a flow run its caller watches in its own process (`meshid run`, `meshid fleet`, a benchmark),
as opposed to a deployment run a worker starts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows import tempserver

HEARTBEAT_ENV = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.name  # the environment variable that sets it


@contextmanager
def foreground() -> Iterator[None]:
    """Run flows in this block without flow-run heartbeats, unless PREFECT_FLOWS_HEARTBEAT_FREQUENCY is set, and,
    without PREFECT_API_URL, on a temporary server that ends with this process (`flows.tempserver`).

    Heartbeats let the server mark a run crashed when the process running it died unseen (zombie detection, for runs
    a worker started). A foreground run's caller sees its own process end; and every flow run, each fleet target's
    too, waits at its end for the heartbeat thread's next one-second wake-up, a second per run for nothing.
    """
    tempserver.start_if_needed()
    if os.environ.get(HEARTBEAT_ENV):
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
