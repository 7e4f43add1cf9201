"""The CLI's start-up: flows are imported with the garbage collector paused, and what they built is frozen."""

import gc

import pytest

from meshid.cli import collector_paused


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
