"""meshid.fleet: the fleet file and its errors, wave planning, thresholds, the breaker, the scheduler, reports."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from meshid import checks, reports
from meshid.errors import InputError
from meshid.fleet.clusters import check_kubeconfigs, lock_name
from meshid.fleet.results import FleetReport, TargetResult, infrastructure_failure
from meshid.fleet.rollout_state import RolloutState
from meshid.fleet.scheduling import CircuitBreaker, Scheduler, jobs
from meshid.fleet.spec import FleetMode, load_fleet_file, parse_fleet
from meshid.fleet.waves import allowed_failures, plan_waves
from meshid.models import CleanupPolicy, Target
from meshid.results import Outcome, RunReport, StageResult, TargetRef

MINIMUM = """\
mode: validate          # validate | rollout | plan
concurrency: 2
trust_domains: [default.default.mesh.local, prod.example.org]
targets:
  - {name: a, provider: sandbox}
  - {name: b, provider: context, kubeconfig: /path/to/kubeconfig, context: prod-eu-1, labels: {wave: canary}}
"""


def _kubeconfig(path: Path, server: str = "https://10.0.0.1:6443", contexts: tuple[str, ...] = ("ctx",)) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}} for n in contexts],
    }))
    return path


def _ctx(name: str, **extra) -> dict:
    return {"name": name, "provider": "context", "kubeconfig": f"/k/{name}", **extra}


def _spec(**data):
    data.setdefault("trust_domains", ["default.default.mesh.local"])
    data.setdefault("targets", [_ctx("a"), _ctx("b"), _ctx("c")])
    return parse_fleet(data)


def _error(**data) -> InputError:
    with pytest.raises(InputError) as info:
        _spec(**data)
    return info.value


# The fleet file


def test_the_minimum_fleet_file_of_issue_5_parses(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(MINIMUM)
    spec = load_fleet_file(path)
    assert spec.mode is FleetMode.VALIDATE and spec.concurrency == 2
    assert spec.trust_domains == ["default.default.mesh.local", "prod.example.org"]
    assert [(t.name, t.provider.value) for t in spec.targets] == [("a", "sandbox"), ("b", "context")]
    assert spec.targets[1].context == "prod-eu-1" and spec.targets[1].labels == {"wave": "canary"}
    assert spec.circuit_breaker == 3 and spec.failure_threshold == 0 and not spec.fail_fast


@pytest.mark.parametrize("data,field,words", [
    ({"trust_domains": ["ok.example.org", "Prod.Example.org"]}, "trust_domains[1]", "uppercase"),
    ({"targets": [_ctx("a"), _ctx("a")]}, "targets[1].name", "more than once"),
    ({"mode": "deploy"}, "mode", "'validate', 'rollout' or 'plan'"),
    ({"targets": [_ctx("a"), {"name": "b", "provider": "context"}]}, "targets[1].kubeconfig", "needs a kubeconfig"),
    ({"targets": [{**_ctx("a"), "kubeconfg": "/x"}]}, "targets[0].kubeconfg", "not a known field"),
    ({"trust_domains": ["a.org", "a.org"]}, "trust_domains[1]", "more than once"),
    ({"concurrency": 0}, "concurrency", "greater than or equal to 1"),
    ({"failure_threshold": "150%"}, "failure_threshold", "neither a count nor a share"),
    ({"mode": "rollout", "trust_domains": ["a.org", "b.org"]}, "trust_domains", "one trust domain"),
    ({"mode": "plan", "targets": [_ctx("a"), {"name": "s"}]}, "targets[1].provider", "existing clusters"),
    ({"resume_from": "x"}, "resume_from", "only a rollout"),
    ({"guide": {"timeouts": {"wait_s": -1}}}, "guide.timeouts.wait_s", "greater than 0"),
    ({"guide": {"target": {"name": "x"}}}, "guide.target", "comes from the fleet"),
    ({"mode": "rollout", "guide": {"cleanup": "always"}}, "guide.cleanup", "keeps its changes"),
    ({"waves": {"canary": ["zz"]}}, "waves.canary[0]", "no target is named 'zz'"),
    ({"waves": {"batches": [["b"], ["a"]]}}, "waves.batches[1][0]", "is the canary"),
    ({"waves": {"batches": [["b"]]}}, "waves.batches", "c are in no wave"),
    ({"waves": {"label": "zone"}}, "targets[1].labels", "no label 'zone'"),
    ({"waves": {"label": "zone", "batch_size": 2}}, "waves.batch_size", "mutually exclusive"),
    ({"dispatch": "cluster"}, "dispatch", "'local' or 'workers'"),
    ({"targets": [_ctx("a"), _ctx("b", work_queue="eu/west")]}, "targets[1].work_queue", "not a work queue name"),
    ({"targets": [_ctx("a", work_queue="")]}, "targets[0].work_queue", "not a work queue name"),
    ({"lock_lease_s": 30}, "lock_lease_s", "greater than or equal to 60"),
])
def test_each_bad_input_gives_one_error_naming_its_field(data, field, words):
    error = _error(**data)
    assert error.field == field, str(error)
    assert words in error.problem and error.fix


def test_file_errors_name_the_fleet_file(tmp_path):
    with pytest.raises(InputError) as missing:
        load_fleet_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [\n")
    with pytest.raises(InputError) as broken:
        load_fleet_file(bad)
    assert missing.value.field == broken.value.field == "fleet_file"
    assert "not valid YAML at line" in broken.value.problem


def test_mode_given_on_the_command_line_replaces_the_files(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(MINIMUM)
    with pytest.raises(InputError) as info:
        load_fleet_file(path, mode="plan")
    assert info.value.field == "targets[0].provider"


def test_cli_rejects_a_bad_fleet_file_with_exit_2_before_any_run(tmp_path, capsys):
    from cli.exits import EXIT_BAD_INPUT
    from cli.main import main

    path = tmp_path / "fleet.yaml"
    path.write_text(MINIMUM.replace("prod.example.org", "prod.example.org:8443"))
    assert main(["fleet", "--fleet-file", str(path)]) == EXIT_BAD_INPUT
    assert "trust_domains[1]: trust domain 'prod.example.org:8443' contains a port" in capsys.readouterr().err
    path.write_text(MINIMUM)  # valid, but /path/to/kubeconfig does not exist
    assert main(["fleet", "--fleet-file", str(path)]) == EXIT_BAD_INPUT
    assert "targets[1].kubeconfig: cannot read /path/to/kubeconfig" in capsys.readouterr().err


def test_kubeconfig_check_names_the_target_and_context(tmp_path):
    spec = _spec(targets=[{"name": "a", "provider": "context", "kubeconfig": str(_kubeconfig(tmp_path / "k"))},
                          {"name": "b", "provider": "context", "kubeconfig": str(tmp_path / "k"),
                           "context": "prod-eu-1"}])
    with pytest.raises(InputError) as info:
        check_kubeconfigs(spec)
    assert info.value.field == "targets[1].context" and "prod-eu-1" in info.value.problem


def test_guide_overrides_reach_every_run_and_a_rollout_keeps_its_changes():
    overrides = {"charts": {"mirror": "http://127.0.0.1:8080"}, "timeouts": {"connectivity_s": 6}}
    validate = _spec(guide=overrides)
    rollout = _spec(mode="rollout", guide=overrides)
    for spec, cleanup in ((validate, CleanupPolicy.ALWAYS), (rollout, CleanupPolicy.NEVER)):
        (job, *_) = jobs(spec, spec.targets[1:])
        assert job.params.target.name == "b" and job.params.trust_domain == "default.default.mesh.local"
        assert job.params.charts.mirror == "http://127.0.0.1:8080" and job.params.timeouts.connectivity_s == 6
        assert job.params.cleanup is cleanup
    assert validate.guide == overrides


# Waves and thresholds


def _names(waves: list[list[Target]]) -> list[list[str]]:
    return [[t.name for t in wave] for wave in waves]


def test_the_canary_is_the_first_target_unless_labelled_or_named():
    assert _names(plan_waves(_spec())) == [["a"], ["b", "c"]]
    labelled = _spec(targets=[_ctx("a"), _ctx("b", labels={"wave": "canary"}), _ctx("c")])
    assert _names(plan_waves(labelled)) == [["b"], ["a", "c"]]
    assert _names(plan_waves(_spec(waves={"canary": ["c", "a"]}))) == [["c", "a"], ["b"]]


def test_batches_by_label_by_list_or_by_size():
    targets = [_ctx("a"), _ctx("b", labels={"zone": "eu"}), _ctx("c", labels={"zone": "us"}),
               _ctx("d", labels={"zone": "eu"})]
    assert _names(plan_waves(_spec(targets=targets, waves={"label": "zone"}))) == [["a"], ["b", "d"], ["c"]]
    assert _names(plan_waves(_spec(targets=targets, waves={"batches": [["d"], ["c", "b"]]}))) == [
        ["a"], ["d"], ["c", "b"]]
    assert _names(plan_waves(_spec(targets=targets, waves={"batch_size": 2}))) == [["a"], ["b", "c"], ["d"]]
    assert _names(plan_waves(_spec(targets=[_ctx("a")]))) == [["a"]]


@pytest.mark.parametrize("threshold,size,allowed", [(0, 5, 0), (2, 5, 2), ("0%", 4, 0), ("25%", 4, 1),
                                                     ("25%", 3, 0), ("50%", 5, 2), ("100%", 3, 3)])
def test_allowed_failures_from_a_count_or_a_share(threshold, size, allowed):
    assert allowed_failures(threshold, size) == allowed


def _result(target: str, outcome: Outcome = Outcome.PASSED, infra: bool = False, stage: str | None = None,
            td: str = "td.org") -> TargetResult:
    return TargetResult(target=target, trust_domain=td, outcome=outcome, infrastructure=infra, failed_stage=stage)


def test_wave_check_mid080_fails_only_beyond_the_threshold():
    wave = [_result("a", Outcome.FAILED), _result("b"), _result("c"), _result("d")]
    ok = checks.MID080.result(1, wave, "25%")
    assert ok.code == "MID080" and not ok.failed and "1 of 4 failed (a)" in ok.message
    bad = checks.MID080.result(0, wave[:1], 0)
    assert bad.blocking and bad.message.startswith("canary: 1 of 1 failed") and bad.hint


# Infrastructure failures, the breaker and the scheduler


def _report(failed_stage: str | None, checks_: list, error: str | None = None) -> RunReport:
    """A run that passed preflight (unless it failed there) and ended at `failed_stage` with `checks_`."""
    now = datetime.now(UTC)
    at = failed_stage or "preflight"
    stages = [] if at == "preflight" else [StageResult.from_checks("preflight", [], started_at=now)]
    stages.append(StageResult.from_checks(at, checks_, started_at=now, error=error))
    return RunReport.build(run_id="r", target=TargetRef(name="a", provider="context"), trust_domain="td.org",
                           stages=stages, versions={}, started_at=now)


def test_infrastructure_failures_are_unreachable_or_unstartable_clusters_only():
    reached = checks.result(checks.MID002, True, "answers")
    assert infrastructure_failure(_report("preflight", [], "ApiError: connection refused"))
    assert infrastructure_failure(_report("cluster-start", [], "start sandbox a failed"))
    assert infrastructure_failure(_report("preflight", [checks.result(checks.MID001, False, "helm missing")]))
    assert not infrastructure_failure(_report("preflight", [checks.result(checks.MID003, False, "mismatch")]))
    assert not infrastructure_failure(_report("install-kong-mesh", [reached], "helm failed"))
    assert not infrastructure_failure(_report("plan", [reached], "dry run rejected"))
    assert not infrastructure_failure(_report(None, [reached]))


def test_the_breaker_opens_after_k_infrastructure_failures():
    breaker = CircuitBreaker(2)
    breaker.record(_result("a", Outcome.FAILED, stage="connectivity-after-permission"))
    breaker.record(_result("b", Outcome.FAILED, infra=True, stage="preflight"))
    assert not breaker.open
    breaker.record(_result("c", Outcome.FAILED, infra=True, stage="cluster-start"))
    assert breaker.open and "2 infrastructure failures (b/td.org at preflight; c/td.org at cluster-start)" in (
        breaker.reason)
    never = CircuitBreaker(None)
    for name in "abcd":
        never.record(_result(name, Outcome.FAILED, infra=True))
    assert not never.open


def _scheduler(spec, **kw) -> Scheduler:
    return Scheduler(jobs(spec, spec.targets), kw.get("concurrency", spec.concurrency), kw.get("fail_fast", False),
                     CircuitBreaker(kw.get("breaker")))


def test_scheduler_bounds_concurrency_and_never_runs_two_jobs_of_one_cluster_key(tmp_path):
    shared = str(tmp_path / "never-read")  # the scheduler (the fleet's parent) reads no kubeconfig
    spec = _spec(trust_domains=["one.org", "two.org"], concurrency=2,
                 targets=[{"name": "a", "provider": "context", "kubeconfig": shared},
                          {"name": "b", "provider": "context", "kubeconfig": shared, "context": "other"},
                          {"name": "c", "provider": "context", "kubeconfig": shared}])
    sched = _scheduler(spec)
    started = [sched.start_next(), sched.start_next()]
    assert [j.key for j in started] == ["a/one.org", "b/one.org"]  # another context: perhaps another cluster
    assert sched.start_next() is None  # concurrency 2
    sched.finish(started[1], _result("b", td="one.org"))
    assert sched.start_next().key == "b/two.org"  # c (a's file and context) and a/two.org wait for a/one.org
    sched.finish(started[0], _result("a", td="one.org"))
    assert sched.start_next().key == "c/one.org"
    assert len(sched.running) == 2 <= spec.concurrency


def test_fail_fast_and_the_breaker_stop_new_jobs_and_skip_the_rest_with_the_reason():
    spec = _spec(trust_domains=["one.org", "two.org"])
    sched = _scheduler(spec, concurrency=1, fail_fast=True)
    job = sched.start_next()
    sched.finish(job, _result("a", Outcome.FAILED, stage="apply-demo", td="one.org"))
    assert sched.start_next() is None
    skipped = sched.skip_rest()
    assert len(skipped) == 5 and {r.outcome for r in skipped} == {Outcome.SKIPPED}
    assert skipped[0].reason == "fail-fast: a/one.org failed at apply-demo"

    sched = _scheduler(spec, concurrency=2, breaker=2)
    first, second = sched.start_next(), sched.start_next()
    sched.finish(first, _result("a", Outcome.FAILED, infra=True, stage="preflight", td="one.org"))
    assert sched.start_next().key == "c/one.org"  # one infrastructure failure: keep going
    sched.finish(second, _result("b", Outcome.FAILED, infra=True, stage="preflight", td="one.org"))
    assert sched.start_next() is None and sched.stopped.startswith("circuit breaker open after 2")
    assert all("circuit breaker" in r.reason for r in sched.skip_rest())


def test_work_queues_stay_with_the_fleet_and_dispatch_defaults_to_local():
    spec = _spec(targets=[_ctx("a", work_queue="eu"), _ctx("b")])
    assert spec.dispatch.value == "local" and [t.work_queue for t in spec.targets] == ["eu", None]
    [job, _] = jobs(spec, spec.targets)
    assert job.target.work_queue == "eu" and "work_queue" not in job.params.target.model_dump()
    assert _spec(dispatch="workers").dispatch.value == "workers"


def test_the_parent_tells_clusters_apart_without_reading_a_kubeconfig():
    a, b = _ctx("a", context="x"), {"name": "b", "provider": "context", "kubeconfig_secret_block": "eu", "context": "x"}
    keys = [job.cluster for job in jobs(_spec(targets=[a, b, {"name": "s"}]), _spec(targets=[a, b, {"name": "s"}])
                                        .targets)]
    assert keys == ["kubeconfig:/k/a#x", "secret:eu#x", "sandbox:s"]


def test_a_result_without_a_report_is_an_infrastructure_failure_mid082():
    spec = _spec()
    lost = TargetResult.lost(jobs(spec, spec.targets[:1], wave=1)[0], "flow run Crashed: worker gone", "f-1", "w-eu")
    assert (lost.outcome, lost.codes, lost.infrastructure, lost.wave) == (Outcome.FAILED, ["MID082"], True, 1)
    data = lost.to_json_dict()
    assert (data["flow_run_id"], data["worker"]) == ("f-1", "w-eu")
    breaker = CircuitBreaker(1)
    breaker.record(lost)
    assert breaker.open
    assert checks.CATALOGUE["MID082"].severity.value == "fail"


def test_lock_names_follow_the_api_server_and_are_valid_keys(tmp_path):
    k1 = _kubeconfig(tmp_path / "k1", "https://127.0.0.1:6443")
    k2 = _kubeconfig(tmp_path / "k2", "https://127.0.0.1:6443", ("x",))
    k3 = _kubeconfig(tmp_path / "k3", "https://127.0.0.1:7443")
    names = [lock_name(Target(name=n, provider="context", kubeconfig=k)) for n, k in (("a", k1), ("b", k2), ("c", k3))]
    assert names[0] == names[1] == "meshid-cluster-https-127-0-0-1-6443" != names[2]
    assert lock_name(Target(name="a")) == "meshid-cluster-sandbox-a"
    secret = Target(name="s", provider="context", kubeconfig_secret_block="eu")
    assert lock_name(secret, k1.read_text()) == names[0]  # a Secret block's kubeconfig, read where it runs
    assert lock_name(secret) == "meshid-cluster-secret-eu"
    long = lock_name(Target(name="a", provider="context", kubeconfig=tmp_path / ("x" * 120)))
    assert re.fullmatch(r"[a-z0-9-]{1,80}", long)


# Reports and rollout state


def test_fleet_report_json_has_the_ci_shape_and_fails_on_a_failed_target():
    failed_run = _report("connectivity-after-permission", [checks.result(checks.MID002, True, "ok"),
                                                                  checks.result(checks.MID061, False, "still denied")])
    results = [TargetResult.from_report(failed_run, wave=0, run_url="http://ui/flow-runs/flow-run/1"),
               _result("b", Outcome.SKIPPED).model_copy(update={"reason": "rollout halted: canary failed"})]
    report = FleetReport(fleet_run_id="f1", mode="rollout", results=results,
                         checks=[checks.MID080.result(0, results[:1], 0)], halted="canary: 1 of 1 failed")
    data = report.to_json_dict()
    assert data["outcome"] == "failed" and data["halted"] == "canary: 1 of 1 failed"
    first = data["results"][0]
    assert {k: first[k] for k in ("target", "trust_domain", "outcome", "failed_stage")} == {
        "target": "a", "trust_domain": "td.org", "outcome": "failed", "failed_stage": "connectivity-after-permission"}
    assert first["codes"] == ["MID061"] and isinstance(first["duration_s"], float) and "report" not in first
    assert [(s["name"], s["outcome"]) for s in first["stages"]] == [("preflight", "passed"),
                                                                     ("connectivity-after-permission", "failed")]
    assert data["results"][1]["outcome"] == "skipped" and data["checks"][0]["code"] == "MID080"
    assert "http://ui/flow-runs/flow-run/1" in report.markdown() and report.rows()[0]["codes"] == "MID061"
    root = ET.fromstring(reports.junit_xml([r.junit_report() for r in results]))
    assert root.get("failures") == "1" and root.get("skipped") == "1"
    passed = FleetReport(fleet_run_id="f2", mode="validate", results=[_result("a"), _result("b", Outcome.SKIPPED)])
    assert passed.outcome is Outcome.PASSED
    assert passed.model_copy(update={"halted": "wave 1 rejected"}).outcome is Outcome.FAILED
    stopped = passed.model_copy(update={"interrupted": "SIGTERM", "results": [_result("a", Outcome.FAILED)]})
    assert stopped.outcome is Outcome.INTERRUPTED and stopped.to_json_dict()["interrupted"] == "SIGTERM"


def test_rollout_state_round_trips_and_a_missing_one_is_bad_input(tmp_path):
    state = RolloutState(fleet_run_id="f1", waves=[["a"], ["b"]], completed=["a/td.org"],
                         results=[_result("a")], halted="wave 1 rejected")
    path = state.save(tmp_path)
    assert path == tmp_path / "f1" / "rollout.json"
    again = RolloutState.load(tmp_path, "f1")
    assert again.completed == ["a/td.org"] and again.results[0].key == "a/td.org" and again.halted
    with pytest.raises(InputError) as info:
        RolloutState.load(tmp_path, "f0")
    assert info.value.field == "resume_from"
