"""What `meshid run` prints, read from its terminal output: each stage's checks as marked lines like `linkerd check`,
the hint under a failed check, the table of stages and the verdict; the run's logs carry the same check lines. On a
terminal (a pseudo-terminal here) a live line per running stage replaces Prefect's log lines, unless --verbose.

Each run is `meshid run` in its own process on a sandbox it starts, in a meshid home of its own (whose background
Prefect server the fixture stops). The failing run asks for a SPIRE trust domain that differs from the MeshIdentity's,
which preflight refuses (MID003), and writes to a stream that can only encode ASCII.
"""

from __future__ import annotations

import json
import re
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from meshid.checks import CATALOGUE
from meshid.terminal import one_line
from tests.conftest import isolated_meshid_home, require_private_netns

MESHID = [sys.executable, "-m", "cli"]
RUN_TIMEOUT_S = 600
TABLE_HEADER = ["STAGE", "OUTCOME", "SECONDS", "TRIES", "CODES"]


@pytest.fixture
def home(tmp_path):
    require_private_netns()
    with isolated_meshid_home(tmp_path / "home") as path:
        yield path


def _environ(home: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A fresh shell's environment for `home`: no PREFECT_API_URL, nobody's profiles, the locale's encoding."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE",
                                                                "PREFECT_PROFILES_PATH", "PYTHONIOENCODING")}
    environ.update(MESHID_HOME=str(home), MESHID_RUNS_DIR=str(tmp_path / "runs"), MESHID_SANDBOX_TICK_S="0.5",
                   PREFECT_HOME=str(tmp_path / "prefect-client"), **extra)
    return environ


def _run(home: Path, tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`meshid run ARGS` from a fresh shell (no PREFECT_API_URL, nobody's profiles), piped; its exit, output and
    JSON report."""
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    done = subprocess.run([*MESHID, "run", "--json-report", str(report), *args], capture_output=True, text=True,
                          env=_environ(home, tmp_path, **env), timeout=RUN_TIMEOUT_S)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done, json.loads(report.read_text())


def _on_a_terminal(home: Path, tmp_path: Path, *args: str) -> tuple[int, str, dict]:
    """`meshid run ARGS` with a pseudo-terminal as stdin, stdout and stderr: its exit, what the terminal got (colours
    dropped, each cursor move a line break) and its JSON report."""
    report = tmp_path / "tty-report.json"
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([*MESHID, "run", "--json-report", str(report), *args], stdin=terminal, stdout=terminal,
                            stderr=terminal, env=_environ(home, tmp_path, TERM="xterm-256color", COLUMNS="120"),
                            close_fds=True)
    os.close(terminal)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every holder of the terminal has gone
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        proc.kill()
    reader.join(timeout=30)
    os.close(controller)
    # colours dropped; a cursor move or line erase starts a new line, so every frame the live lines drew is a line
    text = re.sub(r"\x1b\[[0-9;?]*m", "", seen.decode("utf-8", "replace").replace("\r\n", "\n"))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", text)
    assert "Traceback" not in text, text[-3000:]
    return code, text, json.loads(report.read_text())


def _table(out: str, report: dict) -> list[list[str]]:
    """The stage table's rows (words between blanks and ASCII column bars), after checking its header and rule."""
    lines = [re.findall(r"[^\s|]+", line) for line in out.rstrip().splitlines()]
    start = lines.index(TABLE_HEADER)
    assert set("".join(lines[start + 1])) <= {"─", "-", "+"}, lines[start + 1]
    rows = lines[start + 2:start + 2 + len(report["stages"])]
    assert [row[:2] for row in rows] == [[s["name"], s["outcome"]] for s in report["stages"]], out
    return rows


def test_a_passing_run_prints_every_check_with_the_passed_mark_then_the_stage_table(home, tmp_path):
    done, report = _run(home, tmp_path, "--target-name", "out-pass")
    assert done.returncode == 0 and done.stdout.rstrip().endswith("run passed"), done.stdout + done.stderr[-3000:]
    checks = [check for stage in report["stages"] for check in stage["checks"]]
    assert checks and all(check["outcome"] == "passed" or check["severity"] == "warn" for check in checks)
    lines = done.stdout.splitlines()
    for check in checks:
        warned = check["outcome"] == "failed"
        line = f"{'‼' if warned else '√'} {check['code']} {one_line(check['message'])}"
        assert line in lines, f"{line!r} missing:\n{done.stdout}"
        assert line in done.stderr, "the run's logs carry the same check line"
        hinted = lines[lines.index(line) + 1].startswith("    hint: ")
        assert hinted == warned, f"a hint under {line!r} only when it warned"
    assert "×" not in done.stdout
    assert not re.search(r"MID\d{3} (fail|warn) (passed|failed)", done.stderr), "no severity beside the outcome"
    rows = _table(done.stdout, report)
    for row, stage in zip(rows, report["stages"]):
        codes = ",".join(c["code"] for c in stage["checks"] if c["outcome"] == "failed")
        assert row[1] == "passed" and row[4:] == ([codes] if codes else []), f"CODES lists the warned codes: {row}"


def test_a_failing_run_marks_the_failed_check_with_its_hint_under_it_in_ascii(home, tmp_path):
    done, report = _run(home, tmp_path, "--target-name", "out-fail", "--spire-trust-domain", "other.mesh.local",
                        PYTHONIOENCODING="ascii:backslashreplace")
    assert done.returncode == 1 and done.stdout.rstrip().endswith("run failed at preflight"), \
        done.stdout + done.stderr[-3000:]
    [mid003] = [c for s in report["stages"] for c in s["checks"] if c["code"] == "MID003"]
    lines = done.stdout.splitlines()
    at = lines.index(f"[FAIL] MID003 {one_line(mid003['message'])}")
    assert lines[at + 1] == f"    hint: {CATALOGUE['MID003'].hint}", lines[at:at + 2]
    assert "√" not in done.stdout and "[ok] MID001 " in done.stdout, "ASCII marks where the stream cannot show √"
    assert f"[FAIL] MID003 {one_line(mid003['message'])}" in done.stderr, "the run's logs carry the same check line"
    rows = _table(done.stdout, report)
    assert ["preflight", "failed"] == rows[0][:2] and rows[0][-1] == "MID003", rows[0]


def test_on_a_terminal_each_stage_gets_its_mark_instead_of_prefects_log_lines(home, tmp_path):
    code, text, report = _on_a_terminal(home, tmp_path, "--target-name", "out-tty")
    assert code == 0 and text.rstrip().endswith("run passed"), text[-3000:]
    assert re.search(r"^[^\sa-z] install-kong-mesh \d+ s$", text, re.M), "a spinner line while a stage of seconds ran"
    lines = text.splitlines()
    for stage in report["stages"]:
        mark = "‼" if any(c["outcome"] == "failed" for c in stage["checks"]) else "√"
        assert f"{mark} {stage['name']} {stage['duration_s']:.1f} s" in lines, f"{stage['name']}:\n{text[-3000:]}"
    assert "Finished in state" not in text and "stage preflight, attempt 1" not in text, "no Prefect log lines"
    _table(text, report)


def test_verbose_on_a_terminal_keeps_prefects_log_lines(home, tmp_path):
    code, text, report = _on_a_terminal(home, tmp_path, "--target-name", "out-verbose", "--verbose",
                                        "--spire-trust-domain", "other.mesh.local")
    assert code == 1 and text.rstrip().endswith("run failed at preflight"), text[-3000:]
    assert "stage preflight, attempt 1" in text and "Finished in state" in text
    assert "× preflight failed" not in text, "no live lines"
    assert any(line.startswith("× MID003 ") for line in text.splitlines())
