"""One Prefect test harness for the whole session (starting one costs ~15 s), Prefect's defaults as `meshid run` sets
them, and fast emulator settings."""

from __future__ import annotations

import os

import pytest

from cli.flow_start import prefect_defaults

prefect_defaults()  # as `meshid run` does, before Prefect is imported (by the test modules), which reads them then


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(tmp_path_factory):
    """A temporary Prefect server and database shared by every flow test."""
    os.environ["MESHID_SANDBOX_TICK_S"] = "0.5"
    os.environ["MESHID_RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
