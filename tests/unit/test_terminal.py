"""Check lines and tables as meshid writes them for people (`meshid.terminal`)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from meshid import terminal
from meshid.checks import CATALOGUE, MID002, MID003, MID006, MID020, MID031, MID061, result
from meshid.results import StageResult

TOKEN = "s3cr3tT0kenValue"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Stream(io.StringIO):
    """A text stream with a given encoding and TTY answer, as a terminal or a pipe would have."""

    def __init__(self, encoding: str, tty: bool = False) -> None:
        super().__init__()
        self._encoding, self._tty = encoding, tty

    @property
    def encoding(self) -> str:
        return self._encoding

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(("encoding", "expected"), [
    ("utf-8", {"passed": "√", "warned": "‼", "failed": "×"}),
    ("ascii", {"passed": "[ok]", "warned": "[warn]", "failed": "[FAIL]"}),
    ("latin-1", {"passed": "[ok]", "warned": "[warn]", "failed": "[FAIL]"}),  # has × but not √ or ‼
])
def test_marks_are_the_ones_the_stream_can_encode(encoding, expected):
    assert terminal.marks(Stream(encoding)) == expected


@pytest.mark.parametrize("shown", [terminal.UNICODE_MARKS, terminal.ASCII_MARKS])
def test_a_passed_check_is_one_line_without_its_hint(shown):
    line = terminal.check_line(result(MID003, True, "one trust domain everywhere"), shown)
    assert line == f"{shown['passed']} MID003 one trust domain everywhere"


@pytest.mark.parametrize("shown", [terminal.UNICODE_MARKS, terminal.ASCII_MARKS])
def test_a_failed_fail_check_has_the_failed_mark_and_its_hint_indented_under_it(shown):
    line = terminal.check_line(result(MID003, False, "SPIRE says other.mesh"), shown)
    assert line.splitlines() == [f"{shown['failed']} MID003 SPIRE says other.mesh",
                                 f"    hint: {CATALOGUE['MID003'].hint}"]
    assert "fail" not in line.splitlines()[0].replace("[FAIL]", ""), "no severity word beside the outcome"


@pytest.mark.parametrize("shown", [terminal.UNICODE_MARKS, terminal.ASCII_MARKS])
def test_a_failed_warn_check_is_warned_with_its_hint(shown):
    assert CATALOGUE["MID006"].severity == "warn"
    first, hint = terminal.check_line(result(MID006, False, "leftovers: mtp/old"), shown).splitlines()
    assert first == f"{shown['warned']} MID006 leftovers: mtp/old"
    assert hint == f"    hint: {CATALOGUE['MID006'].hint}"


def test_a_message_of_several_lines_is_one_line():
    check = result(MID061, True, 'allowed: 5/5; last: HTTP 200 {"counter":6}\n')
    assert terminal.check_line(check, terminal.ASCII_MARKS) == '[ok] MID061 allowed: 5/5; last: HTTP 200 {"counter":6}'


def test_a_check_line_is_redacted():
    line = terminal.check_line(result(MID002, False, f"Authorization: Bearer {TOKEN}"), terminal.UNICODE_MARKS)
    assert TOKEN not in line


def test_a_piped_table_is_unwrapped_plain_and_keeps_long_cells_whole():
    domain = "a-very-long-trust-domain-" * 6 + "mesh.local"
    out = Stream("utf-8")
    terminal.print_table(["TARGET", "TRUST DOMAIN", "SECONDS"], [["zone-1", domain, 12.5], ["zone-2", "b.mesh", 3.0]],
                         out)
    header, rule, first, second = out.getvalue().splitlines()
    assert header.split() == ["TARGET", "TRUST", "DOMAIN", "SECONDS"] and set(rule) == {"─"}
    assert first.split() == ["zone-1", domain, "12.5"] and second.split() == ["zone-2", "b.mesh", "3.0"]
    assert first.index(domain) == second.index("b.mesh") == header.index("TRUST DOMAIN"), "columns line up"
    assert first.endswith("12.5") and second.endswith(" 3.0"), "numbers are right-aligned"
    assert "\x1b" not in out.getvalue(), "no colour in a pipe"


def test_a_table_in_a_narrow_terminal_folds_long_cells_inside_their_column(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    domain = "x" * 60 + ".mesh.local"
    out = Stream("utf-8", tty=True)
    terminal.print_table(["TARGET", "TRUST DOMAIN"], [["zone-1", domain]], out)
    text = out.getvalue()
    lines = [line for line in text.replace("\x1b[1m", "").replace("\x1b[0m", "").splitlines()]
    assert all(len(line) <= 40 for line in lines), lines
    assert "".join(line[lines[0].index("TRUST"):].strip() for line in lines[2:]) == domain, "folded, nothing cut"


def test_a_table_on_an_ascii_stream_has_ascii_borders():
    out = Stream("ascii")
    terminal.print_table(["STAGE", "OUTCOME"], [["preflight", "passed"]], out)
    out.getvalue().encode("ascii")
    assert out.getvalue().splitlines()[0].split() == ["STAGE", "|", "OUTCOME"]


def _stage(name, *checks, error=None):
    return StageResult.from_checks(name, checks, started_at=T0, ended_at=T0 + timedelta(seconds=1.25), error=error)


def test_live_stages_print_each_ended_stage_with_its_mark_and_report_to_nothing_outside():
    terminal.stage_ended(_stage("preflight"))  # no display: nothing happens
    out = Stream("utf-8", tty=True)
    with terminal.live_stages(out):
        for name in ("preflight", "install-spire", "register-spiffe-ids"):
            terminal.stage_started(name, 1)
        terminal.stage_ended(_stage("preflight", result(MID003, True, "same")))
        terminal.stage_ended(_stage("register-spiffe-ids", result(MID031, False, "no className")))
        terminal.stage_ended(_stage("install-spire", result(MID020, False, "not Ready")))
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "\n", out.getvalue()).splitlines()
    assert "√ preflight 1.2 s" in lines and "‼ register-spiffe-ids 1.2 s" in lines
    assert "× install-spire failed 1.2 s" in lines
