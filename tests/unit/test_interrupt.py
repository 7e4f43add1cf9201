"""The stop request: the first signal stops stages, the second also cleanup, exit codes as a shell reports them."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from meshid import interrupt


def _deliver(signum: int) -> None:
    """Send `signum` to this process and let the main thread run its handler."""
    os.kill(os.getpid(), signum)
    time.sleep(0.01)


def test_exit_codes_are_the_shells_for_a_process_ended_by_the_signal():
    assert interrupt.exit_code(signal.SIGINT) == 130  # bash: 128 + 2
    assert interrupt.exit_code(signal.SIGTERM) == 143  # 128 + 15
    assert str(interrupt.Interrupted(signal.SIGTERM)) == "interrupted by SIGTERM"


def test_first_signal_stops_stages_but_not_shielded_cleanup_and_the_second_stops_both():
    with interrupt.signals_handled():
        assert not interrupt.requested() and interrupt.received() is None
        _deliver(signal.SIGINT)
        assert interrupt.requested() and interrupt.received() == signal.SIGINT
        with pytest.raises(interrupt.Interrupted) as stopped:
            interrupt.check()
        assert stopped.value.signum == signal.SIGINT
        with interrupt.shielded():
            interrupt.check()  # cleanup goes on
            assert not interrupt.abandoned()
            _deliver(signal.SIGTERM)
            assert interrupt.abandoned()
            with pytest.raises(interrupt.Interrupted):
                interrupt.check()
    assert interrupt.received() == signal.SIGINT, "the first signal is what the run reports"
    assert not interrupt.requested(), "outside the block nothing is stopped"


def test_a_wait_ends_early_on_a_stop_that_applies_and_not_on_one_that_does_not():
    with interrupt.signals_handled():
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        with pytest.raises(interrupt.Interrupted):
            interrupt.wait(10)
        assert time.monotonic() - started < 5
        with interrupt.shielded():
            started = time.monotonic()
            interrupt.wait(0.3)  # shielded: the first signal does not cut it short
            assert time.monotonic() - started >= 0.3


def test_a_fresh_block_forgets_the_last_runs_signal_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with interrupt.signals_handled():
        _deliver(signal.SIGTERM)
        assert interrupt.requested()
    assert signal.getsignal(signal.SIGTERM) is before
    with interrupt.signals_handled():
        assert not interrupt.requested()


def test_outside_the_main_thread_nothing_is_installed_and_the_processes_request_is_shared():
    seen = []

    def body() -> None:
        with interrupt.signals_handled():
            seen.append(interrupt.requested())

    with interrupt.signals_handled():
        _deliver(signal.SIGINT)
        worker = threading.Thread(target=body)
        worker.start()
        worker.join()
    assert seen == [True]
