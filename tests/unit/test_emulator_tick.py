"""The emulator's status ticks keep a fixed rate, as Kong Mesh's Go tickers do."""

import pytest

from sandbox.emulator.main import next_tick


@pytest.mark.parametrize(("due", "now", "expected"), [
    (10.0, 10.0, 11.0),   # a tick that took no time: the next one a period later
    (10.0, 10.4, 11.0),   # the tick's own work does not push the next one back
    (10.0, 10.999, 11.0),
    (10.0, 11.2, 12.0),   # a tick that overran its period skips the tick it covered
    (10.0, 13.5, 14.0),
])
def test_next_tick_stays_on_the_grid(due: float, now: float, expected: float) -> None:
    assert next_tick(due, 1.0, now) == pytest.approx(expected)


def test_a_new_period_applies_from_the_tick_that_just_ran() -> None:
    assert next_tick(10.0, 5.0, 10.3) == pytest.approx(15.0)
    assert next_tick(15.0, 0.5, 15.2) == pytest.approx(15.5)
