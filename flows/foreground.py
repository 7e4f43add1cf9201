"""Prefect settings for a flow run its caller watches in its own process (`meshid run`, `meshid fleet`, a benchmark),
as opposed to a deployment run a worker starts."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect.context import refresh_global_settings_context
from prefect.settings import (PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                              get_current_settings, temporary_settings)

from meshid.prefectserver import API_URL_ENV, Handle
from meshid.redact import redact

HEARTBEAT_ENV = PREFECT_FLOWS_HEARTBEAT_FREQUENCY.name  # the environment variable that sets it
CSRF_ENV = PREFECT_CLIENT_CSRF_SUPPORT_ENABLED.name
CSRF_PROBE_TIMEOUT_S = 5.0


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
    _no_csrf_tokens_unless_asked()
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


def _no_csrf_tokens_unless_asked() -> None:
    """Ask the server once whether it wants CSRF tokens, unless PREFECT_CLIENT_CSRF_SUPPORT_ENABLED is set.

    Each Prefect client asks for a token before its first write, and a server without CSRF protection (Prefect's
    default) answers 422, after which that one client stops asking (prefect/client/base.py, `_add_csrf_headers`). A
    fleet process makes a few clients per target. When this one ask gets that answer, its clients do not ask again;
    any other answer (a token, an error, no answer) leaves Prefect's own asking as it is.
    """
    url = get_current_settings().api.url
    if os.environ.get(CSRF_ENV) or not url:
        return
    try:
        answer = httpx.get(f"{url}/csrf-token", params={"client": f"meshid-{os.getpid()}"},
                           timeout=CSRF_PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return
    if answer.status_code == 422 and "CSRF protection is disabled" in answer.text:
        os.environ[CSRF_ENV] = "false"
        refresh_global_settings_context()
