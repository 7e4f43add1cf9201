"""Nightly trends from fleet reports: pass rates, durations, flaky stages, failure streak, diff to the last green."""

from __future__ import annotations

from meshid import trends
from meshid.trends import Change, Night


def _stage(name: str, outcome: str = "passed", duration_s: float = 1.0, flaky: bool = False) -> dict:
    return {"name": name, "outcome": outcome, "duration_s": duration_s, "flaky": flaky}


def _night(i: int, *results: dict) -> Night:
    outcome = "passed" if all(r["outcome"] == "passed" for r in results) else "failed"
    return Night(run=f"nightly-{i}", when=f"2025-01-0{i}T02:00:00+01:00", report={"outcome": outcome,
                                                                                   "results": list(results)})


def _result(target: str, *stages: dict, td: str = "a.org") -> dict:
    failed = next((s["name"] for s in stages if s["outcome"] == "failed"), None)
    return {"target": target, "trust_domain": td, "outcome": "failed" if failed else "passed", "failed_stage": failed,
            "duration_s": sum(s["duration_s"] for s in stages), "stages": list(stages)}


GREEN = _result("a", _stage("install", duration_s=10), _stage("connectivity", duration_s=2))
FLAKY = _result("a", _stage("install", duration_s=30, flaky=True), _stage("connectivity", duration_s=4))
BROKEN = _result("a", _stage("install", duration_s=20), _stage("connectivity", "failed", 6))


def test_pass_rate_duration_and_flaky_per_stage_in_stage_order():
    trend = trends.compute([_night(1, GREEN), _night(2, FLAKY), _night(3, BROKEN), _night(4, BROKEN)])
    install, conn = trend.stages
    assert (install.name, install.passed, install.failed, install.flaky) == ("install", 4, 0, 1)
    assert install.pass_rate == 1.0 and install.mean_s == 20.0 and install.max_s == 30.0
    assert (conn.name, conn.passed, conn.failed, conn.pass_rate, conn.max_s) == ("connectivity", 2, 2, 0.5, 6.0)
    assert (trend.nights, trend.green_nights) == (4, 2)
    assert trends.rows(trend)[1] == {"stage": "connectivity", "pass_rate": 0.5, "passed": 2, "failed": 2, "flaky": 0,
                                     "mean_s": 4.5, "max_s": 6.0}


def test_skipped_stages_are_not_counted():
    skipped = _result("a", _stage("install", "failed"), _stage("connectivity", "skipped"))
    trend = trends.compute([_night(1, skipped)])
    assert [(s.name, s.passed, s.failed) for s in trend.stages] == [("install", 0, 1)]


def test_first_failing_night_of_the_current_streak_and_diff_against_the_last_green():
    nights = [_night(1, BROKEN), _night(2, GREEN), _night(3, FLAKY), _night(4, BROKEN), _night(5, BROKEN)]
    trend = trends.compute(nights)
    assert trend.streak == 2 and trend.streak_start is nights[3]
    assert trend.last_green is nights[2]
    assert trend.changes == [Change("a", "a.org", "connectivity", "passed", "failed")]
    text = trends.markdown(trend)
    assert "failing for 2 night(s)" in text and "since `nightly-4`" in text
    assert "`install` (1)" in text and "changes since the last green night `nightly-3`" in text


def test_a_green_night_ends_the_streak():
    trend = trends.compute([_night(1, BROKEN), _night(2, GREEN)])
    assert trend.streak == 0 and trend.streak_start is None and trend.last_green is None and trend.changes == []
    assert "## Nightly trend: **green**" in trends.markdown(trend)
    assert "no earlier green night" in trends.markdown(trend)


def test_targets_added_or_removed_show_as_absent_and_results_without_stages_count_their_failed_stage():
    gone = _result("b", _stage("install"), td="b.org")
    now = {"target": "c", "trust_domain": "a.org", "outcome": "failed", "failed_stage": "cluster-start",
           "duration_s": 3.0}
    trend = trends.compute([_night(1, GREEN, gone), _night(2, GREEN, now)])
    assert trend.changes == [Change("b", "b.org", "install", "passed", "absent"),
                             Change("c", "a.org", "cluster-start", "absent", "failed")]
    assert [(s.name, s.failed, s.mean_s) for s in trend.stages][-1] == ("cluster-start", 1, 0.0)
    assert trend.streak_start.run == "nightly-2"
