"""`probes.expect`: streaks, transient answers, the window, and the pace of calls (a scripted probe, no HTTP)."""

from __future__ import annotations

import time

import pytest

from meshid.probes import allowed, denied, expect
from meshid.results import HttpExchange

OK = HttpExchange(status=200, body='{"counter": 1, "zone": ""}')
DENIED = HttpExchange(status=500, body='{"title": "failed to retrieve zone", "status": 500}')
BUSY = HttpExchange(status=503, body="upstream connect error")
NO_ANSWER = HttpExchange(status=None, body="", error="ConnectError: refused")


class ScriptedProbe:
    """Answers from a script, then the script's last answer forever; records when each call was made."""

    def __init__(self, *answers: HttpExchange) -> None:
        self.answers = list(answers)
        self.at: list[float] = []

    def call(self) -> HttpExchange:
        self.at.append(time.monotonic())
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_a_wrong_answer_restarts_the_streak():
    probe = ScriptedProbe(OK, OK, DENIED, OK, OK, OK)
    result = expect(probe, allowed, 3, timeout_s=5, interval_s=0.01, streak_interval_s=0.01)
    assert result.met and result.calls == 6 and result.streak == 3


def test_transient_answers_neither_count_nor_reset():
    probe = ScriptedProbe(DENIED, BUSY, DENIED, NO_ANSWER, DENIED)
    result = expect(probe, denied, 3, timeout_s=5, interval_s=0.01, streak_interval_s=0.01)
    assert result.met and result.calls == 5 and result.transient == 2


def test_the_window_closes_with_the_last_answer():
    probe = ScriptedProbe(DENIED)
    result = expect(probe, allowed, 2, timeout_s=1.0, interval_s=0.05)
    assert not result.met and result.last == DENIED and result.streak == 0
    assert result.elapsed_s <= 1.0 and 5 <= result.calls <= 21  # paced, not spinning; slack for a loaded machine


@pytest.mark.parametrize("streak_first_at", [1, 3])
def test_calls_are_paced_slower_while_waiting_than_within_a_streak(streak_first_at):
    probe = ScriptedProbe(*[DENIED] * streak_first_at, OK)
    result = expect(probe, allowed, 3, timeout_s=5, interval_s=0.2, streak_interval_s=0.02)
    gaps = [b - a for a, b in zip(probe.at, probe.at[1:])]
    waiting, streak = gaps[:streak_first_at], gaps[streak_first_at:]
    assert result.met and result.calls == streak_first_at + 3
    assert all(g >= 0.2 for g in waiting) and all(0.02 <= g < 0.15 for g in streak)
