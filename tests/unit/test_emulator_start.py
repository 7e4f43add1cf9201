"""The emulator starts alongside kwokctl and waits for the file that says the API server is up."""

import threading
import time

from sandbox.emulator.main import wait_for


def test_goes_on_at_once_when_the_file_is_there(tmp_path):
    (tmp_path / "api.up").write_text("https://127.0.0.1:1\n")
    started = time.monotonic()
    assert wait_for(tmp_path / "api.up", 5, threading.Event())
    assert time.monotonic() - started < 0.5


def test_goes_on_when_the_file_appears(tmp_path):
    threading.Timer(0.2, lambda: (tmp_path / "api.up").write_text("up\n")).start()
    started = time.monotonic()
    assert wait_for(tmp_path / "api.up", 5, threading.Event())
    assert 0.15 < time.monotonic() - started < 2


def test_gives_up_after_its_bound(tmp_path):
    started = time.monotonic()
    assert not wait_for(tmp_path / "api.up", 0.2, threading.Event())
    assert 0.2 <= time.monotonic() - started < 2


def test_a_stop_ends_the_wait(tmp_path):
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert not wait_for(tmp_path / "api.up", 30, stop)
    assert time.monotonic() - started < 2
