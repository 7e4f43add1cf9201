"""The CLI and closed pipes: a reader that leaves ends the command quietly, and SIGPIPE is never restored (a socket
write to a closed peer must raise in its thread, not kill a run)."""

from __future__ import annotations

import signal
import subprocess
import sys

from cli.main import main


def test_main_leaves_sigpipe_ignored():
    assert main(["check", "--list"]) == 0
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN


def test_a_reader_that_leaves_early_ends_the_command_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "cli", "check", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # gone before the command writes its first line
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"Traceback" not in err and b"BrokenPipeError" not in err
