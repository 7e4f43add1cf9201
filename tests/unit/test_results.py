"""Stage and run outcomes, flakiness, timestamps and the JSON report shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from meshid.checks import MID001, MID006, MID010, MID011, MID013, MID030, MID031, MID060, MID070, result
from meshid.results import HttpExchange, Outcome, RunReport, StageResult, TargetRef, Touched

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def stage(name: str, *checks, attempts: int = 1, error: str | None = None, http=None,
          touched: tuple[Touched, ...] = (Touched(kind="Namespace", namespace=None, name="demo", action="created"),)
          ) -> StageResult:
    return StageResult.from_checks(
        name, checks, started_at=T0, ended_at=T0 + timedelta(seconds=2.5), attempts=attempts, error=error, http=http,
        touched=touched,
    )


def report(*stages: StageResult) -> RunReport:
    return RunReport.build(
        run_id="r1",
        target=TargetRef(name="kind-a", provider="kind"),
        trust_domain="example.org",
        stages=stages,
        versions={"kubernetes": "1.31.2", "kong-mesh chart": "2.12.3"},
        started_at=T0,
        ended_at=T0 + timedelta(seconds=30),
    )


def test_failed_warn_check_does_not_fail_the_stage():
    s = stage("registration", result(MID030, True, "podsSelected 2"), result(MID031, False, "no className"))
    assert s.outcome is Outcome.PASSED
    assert s.codes == ["MID031"]
    assert [c.code for c in s.warnings] == ["MID031"]


def test_failed_fail_check_or_error_fails_the_stage():
    assert stage("deny", result(MID060, False, "HTTP 200")).outcome is Outcome.FAILED
    assert stage("deny", result(MID060, True, "HTTP 500"), error="boom").outcome is Outcome.FAILED


def test_failed_checks_and_codes_keep_check_order():
    s = stage("x", result(MID013, False, "w"), result(MID010, True, "ok"), result(MID011, False, "f"))
    assert [c.code for c in s.failed_checks] == ["MID013", "MID011"]
    assert s.codes == ["MID013", "MID011"]


@pytest.mark.parametrize(
    ("checks", "attempts", "flaky"),
    [((), 2, True), ((), 1, False), ((result(MID010, False, "down"),), 3, False)],
)
def test_flaky_means_passed_after_a_retry(checks, attempts, flaky):
    assert stage("cp", *checks, attempts=attempts).flaky is flaky


def test_attempts_must_be_at_least_one():
    with pytest.raises(ValidationError):
        stage("x", attempts=0)


def test_timestamps_are_aware_and_stored_in_utc():
    plus2 = timezone(timedelta(hours=2))
    s = StageResult(name="x", outcome="passed", started_at=T0.astimezone(plus2), ended_at=T0.astimezone(plus2))
    assert s.started_at.tzinfo is UTC and s.started_at == T0
    with pytest.raises(ValidationError):
        StageResult(name="x", outcome="passed", started_at=datetime(2025, 1, 1), ended_at=T0)
    with pytest.raises(ValidationError, match="before started_at"):
        StageResult(name="x", outcome="passed", started_at=T0, ended_at=T0 - timedelta(seconds=1))


def test_duration_spans_start_to_end():
    assert stage("x").duration_s == 2.5


def test_failed_stage_is_the_first_failed_one():
    skipped = StageResult(name="allow", outcome=Outcome.SKIPPED, started_at=T0, ended_at=T0)
    r = report(
        stage("preflight"),
        stage("deny", result(MID060, False, "HTTP 200")),
        skipped,
        stage("cleanup", result(MID070, False, "leftovers")),
    )
    assert r.outcome is Outcome.FAILED
    assert r.failed_stage == "deny"
    assert r.duration_s == 30


def test_run_with_skipped_and_warned_stages_passes():
    skipped = StageResult(name="rollback", outcome=Outcome.SKIPPED, started_at=T0, ended_at=T0)
    r = report(stage("preflight", result(MID006, False, "leftovers")), skipped)
    assert (r.outcome, r.failed_stage) == (Outcome.PASSED, None)


def test_to_json_dict_has_exactly_the_documented_shape():
    http = HttpExchange(status=500, body='{"title":"failed to retrieve zone"}', error=None)
    r = report(stage("preflight", result(MID001, True, "helm 3.16")), stage("deny", http=http))
    doc = json.loads(json.dumps(r.to_json_dict()))
    assert set(doc) == {"run_id", "target", "outcome", "failed_stage", "trust_domain", "stages", "versions"}
    assert doc["target"] == {"name": "kind-a", "provider": "kind"}
    assert (doc["outcome"], doc["failed_stage"], doc["trust_domain"]) == ("passed", None, "example.org")
    assert doc["versions"] == {"kubernetes": "1.31.2", "kong-mesh chart": "2.12.3"}
    for s in doc["stages"]:
        assert set(s) == {"name", "outcome", "duration_s", "attempts", "flaky", "checks", "http", "error"}
    preflight, deny = doc["stages"]
    assert preflight["http"] is None
    assert deny["http"] == {"status": 500, "body": '{"title":"failed to retrieve zone"}'}
    assert preflight["checks"] == [
        {"code": "MID001", "severity": "fail", "outcome": "passed", "message": "helm 3.16", "hint": None}
    ]
    assert (preflight["duration_s"], preflight["attempts"], preflight["flaky"]) == (2.5, 1, False)


def test_report_round_trips_through_json():
    r = report(stage("deny", result(MID060, False, "HTTP 200"), http=HttpExchange(status=None, body="", error="x")))
    assert RunReport.model_validate_json(r.model_dump_json()) == r


def test_a_signal_makes_the_run_interrupted_whatever_its_stages_did_and_names_the_stopped_ones():
    stopped = StageResult.from_checks("wait", [], started_at=T0, ended_at=T0, error="interrupted by SIGINT",
                                      interrupted=True)
    assert stopped.outcome is Outcome.INTERRUPTED
    r = RunReport.build(run_id="r", target=TargetRef(name="a", provider="kind"), trust_domain="x.org",
                        stages=[stage("deny", result(MID060, False, "HTTP 200")), stopped], versions={},
                        started_at=T0, ended_at=T0, signal="SIGINT", interrupted_stages=["wait"])
    assert r.outcome is Outcome.INTERRUPTED and r.failed_stage == "deny" and r.stopped_at == "wait"
    assert r.to_json_dict()["interrupted_stages"] == ["wait"]
    assert "signal" not in report(stage("deny")).to_json_dict(), "a run that was not interrupted keeps its shape"


def test_a_run_that_passed_without_changing_anything_is_unchanged_and_the_probe_does_not_count():
    seen = (Touched(kind="HelmRelease", namespace="spire", name="spire", action="unchanged"),
            Touched(kind="Pod", namespace="kong-mesh-demo", name="kv-1", action="probed"))
    probe = (Touched(kind="Namespace", namespace=None, name="meshid-probe", action="created"),
             Touched(kind="Deployment", namespace="meshid-probe", name="meshid-probe", action="created"),
             Touched(kind="Namespace", namespace=None, name="meshid-probe", action="deleted"))
    quiet = RunReport.build(run_id="r", target=TargetRef(name="a", provider="context"), trust_domain="t",
                            stages=[stage("apply", touched=seen), stage("probe", touched=probe)], versions={},
                            started_at=T0, fixtures=("meshid-probe",))
    assert quiet.outcome is Outcome.UNCHANGED and quiet.to_json_dict()["outcome"] == "unchanged"
    changed = RunReport.build(run_id="r", target=TargetRef(name="a", provider="context"), trust_domain="t",
                              stages=[stage("apply"), stage("probe", touched=probe)], versions={}, started_at=T0,
                              fixtures=("meshid-probe",))
    assert changed.outcome is Outcome.PASSED


def test_what_a_stage_hands_on_stays_out_of_its_json():
    """The cluster a stage reached and the versions it met go to the stages after it and the run's report, not into
    the stage's own JSON (the report's shape)."""
    handed = StageResult.from_checks("cluster-start", [result(MID001, True, "ok")], started_at=T0,
                                     cluster=object(), versions={"kubernetes": "v1.36.0"})
    plain = StageResult.from_checks("cluster-start", [result(MID001, True, "ok")], started_at=T0,
                                    ended_at=handed.ended_at)
    assert handed.versions == {"kubernetes": "v1.36.0"} and handed.cluster is not None
    assert handed.model_dump(mode="json") == plain.model_dump(mode="json")
    assert report(handed).model_dump(mode="json")["stages"] == [plain.model_dump(mode="json")]
