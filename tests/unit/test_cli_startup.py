"""The CLI's start-up: flows are imported with the garbage collector paused, and what they built is frozen; Prefect
is told not to phone home before it is imported."""

import gc
import os
import subprocess
import sys

import pytest
from prefect._internal.analytics.ci_detection import CI_ENV_VARS

from meshid.collector import collector_paused


@pytest.fixture(autouse=True)
def _restore_collector():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_the_collector_is_paused_inside_and_back_after_with_the_imports_frozen() -> None:
    gc.enable()
    frozen_before = gc.get_freeze_count()
    with collector_paused():
        assert not gc.isenabled()
        built = [[] for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen_before + len(built)


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_an_import_that_fails_still_brings_the_collector_back() -> None:
    gc.enable()
    with pytest.raises(ImportError), collector_paused():
        import meshid.no_such_module  # noqa: F401
    assert gc.isenabled()


def _telemetry_after_defaults(**env: str) -> str:
    """What Prefect's SDK says of its own telemetry once `prefect_defaults` ran, in a fresh interpreter whose
    environment has no DO_NOT_TRACK and no CI marker (Prefect counts either as opted out) besides `env`."""
    clean = {k: v for k, v in os.environ.items()
             if k != "DO_NOT_TRACK" and k not in CI_ENV_VARS and not k.startswith("PREFECT_")}
    code = ("from cli.flow_start import prefect_defaults; prefect_defaults(); "
            "from prefect._internal.analytics.enabled import is_telemetry_enabled; print(is_telemetry_enabled())")
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, check=True).stdout.strip()


def test_prefect_sdk_telemetry_is_off_unless_the_user_asks_for_it() -> None:
    assert _telemetry_after_defaults() == "False"  # prefect/_internal/analytics/enabled.py: DO_NOT_TRACK=1
    assert _telemetry_after_defaults(DO_NOT_TRACK="0") == "True"  # the user's own choice stays
