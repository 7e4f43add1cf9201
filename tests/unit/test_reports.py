"""JSON, JUnit XML and markdown renderings of run reports, all redacted."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from meshid import reports
from meshid.checks import MID001, MID006, MID010, MID050, MID060, MID061, result
from meshid.results import HttpExchange, Outcome, RunReport, StageResult, TargetRef, Touched

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = "s3cr3tT0kenValue"
DENIED_BODY = f'{{"status":500,"title":"failed to retrieve zone"}} Authorization: Bearer {TOKEN}'


def stage(name, *checks, outcome=None, attempts=1, http=None, touched=(), error=None) -> StageResult:
    end = T0 + timedelta(seconds=1.25)
    if outcome is Outcome.SKIPPED:
        return StageResult(name=name, outcome=outcome, started_at=T0, ended_at=end, error=error)
    return StageResult.from_checks(
        name, checks, started_at=T0, ended_at=end, attempts=attempts, http=http, touched=touched, error=error
    )


@pytest.fixture
def run() -> RunReport:
    """preflight (warn), restart (flaky, touched), deny (failed, token in body), allow (skipped)."""
    return RunReport.build(
        run_id="run-7",
        target=TargetRef(name="kind-a", provider="kind"),
        trust_domain="example.org",
        stages=[
            stage("preflight", result(MID001, True, "helm 3.16"), result(MID006, False, "old MTP found")),
            stage(
                "restart",
                result(MID050, True, "2 pods"),
                attempts=3,
                touched=[Touched(kind="Pod", namespace="kong-mesh-demo", name="kv-1", action="restarted",
                                 detail=f"token={TOKEN}")],
            ),
            stage(
                "deny",
                result(MID060, False, 'HTTP 200 <ok> & "fine"\x00'),
                result(MID061, True, "n/a"),
                http=HttpExchange(status=200, body=DENIED_BODY),
            ),
            stage("allow", outcome=Outcome.SKIPPED, error="deny failed"),
        ],
        versions={"kubernetes": "1.31.2", "kong-mesh chart": "2.12.3"},
        started_at=T0,
        ended_at=T0 + timedelta(seconds=9),
        diagnostics_dir="/runs/run-7/diagnostics",
    )


def test_json_file_has_the_documented_shape_and_is_redacted(run, tmp_path):
    path = reports.write_json(run, tmp_path / "out" / "report.json")
    text = path.read_text()
    doc = json.loads(text)
    assert TOKEN not in text and "Bearer <redacted>" in doc["stages"][2]["http"]["body"]
    assert set(doc) == {"run_id", "target", "outcome", "failed_stage", "trust_domain", "stages", "versions"}
    assert (doc["outcome"], doc["failed_stage"]) == ("failed", "deny")
    assert [s["outcome"] for s in doc["stages"]] == ["passed", "passed", "failed", "skipped"]
    assert [s["flaky"] for s in doc["stages"]] == [False, True, False, False]
    assert [s["http"] for s in doc["stages"]][:2] == [None, None]
    assert set(doc["stages"][2]["http"]) == {"status", "body"}
    check_keys = {k for s in doc["stages"] for c in s["checks"] for k in c}
    assert check_keys == {"code", "severity", "outcome", "message", "hint"}


def test_junit_has_one_testcase_per_stage_and_failures_exactly_where_stages_failed(run):
    other = run.model_copy(update={"trust_domain": "other.org"})
    root = ET.fromstring(reports.junit_xml([run, other], "nightly"))
    assert root.tag == "testsuites" and root.get("name") == "nightly"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("8", "2", "2")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["meshid kind-a (kind) example.org", "meshid kind-a (kind) other.org"]
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == ["preflight", "restart", "deny", "allow"]
    assert {c.get("classname") for c in cases} == {"meshid.kind-a.example.org"}
    assert {c.get("time") for c in cases} == {"1.250"}
    assert [c.find("failure") is not None for c in cases] == [False, False, True, False]
    assert [c.find("skipped") is not None for c in cases] == [False, False, False, True]
    props = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    assert props["version.kong-mesh chart"] == "2.12.3" and props["run_id"] == "run-7"


def test_junit_failure_names_codes_and_escapes_text(run):
    deny = ET.fromstring(reports.junit_xml([run])).find(".//testcase[@name='deny']")
    failure = deny.find("failure")
    assert failure.get("message") == 'MID060: HTTP 200 <ok> & "fine"\ufffd'
    assert failure.get("type") == "MID060"
    assert failure.text.startswith("[FAIL] MID060 HTTP 200")
    assert "hint:" in failure.text and "HTTP 200" in failure.text and "MID061" not in failure.text


def test_junit_reports_warnings_and_flakiness_in_system_out(run):
    root = ET.fromstring(reports.junit_xml([run]))
    preflight = root.find(".//testcase[@name='preflight']")
    restart = root.find(".//testcase[@name='restart']")
    assert "[warn] MID006 old MTP found" in preflight.findtext("system-out")
    assert restart.findtext("system-out") == "flaky: passed after 3 attempts"
    assert root.find(".//testcase[@name='deny']").find("system-out") is None


def test_junit_failure_from_an_error_without_failed_checks():
    broken = stage("install", result(MID010, True, "ok"), error="helm timed out")
    report = RunReport.build(run_id="r", target=TargetRef(name="a", provider="kind"), trust_domain="td",
                             stages=[broken], versions={}, started_at=T0, ended_at=T0)
    failure = ET.fromstring(reports.junit_xml([report])).find(".//failure")
    assert (failure.get("message"), failure.get("type")) == ("helm timed out", "error")


def test_write_junit_writes_parseable_utf8(run, tmp_path):
    path = reports.write_junit([run], tmp_path / "junit" / "meshid.xml")
    assert ET.parse(path).getroot().tag == "testsuites"


def test_token_in_http_body_is_redacted_in_every_output(run, tmp_path):
    deny = run.stages[2]
    outputs = [
        reports.write_json(run, tmp_path / "r.json").read_text(),
        reports.junit_xml([run]),
        reports.stage_markdown(deny),
        reports.run_summary_markdown(run),
        json.dumps(reports.summary_rows(run)),
        json.dumps(reports.touched_rows(run.stages[1])),
    ]
    assert TOKEN in deny.http.body
    for out in outputs:
        assert TOKEN not in out
    junit_failure = ET.fromstring(outputs[1]).findtext(".//failure")
    for out in (json.loads(outputs[0])["stages"][2]["http"]["body"], junit_failure, outputs[2]):
        assert "Authorization: Bearer <redacted>" in out


def test_stage_markdown_shows_outcome_checks_hints_and_http(run):
    md = reports.stage_markdown(run.stages[2])
    assert md.startswith("### deny: FAILED\n")
    assert "attempts 1" in md
    assert "| code | severity | outcome | message | hint |" in md
    assert "| MID060 | fail | FAILED |" in md and "allow-all MeshTrafficPermission" in md
    assert "| MID061 | fail | passed | n/a |  |" in md
    assert "**HTTP 200**" in md and "failed to retrieve zone" in md
    assert reports.stage_markdown(run.stages[1]).startswith("### restart: passed (flaky)\n")


def test_stage_markdown_fences_a_body_containing_backticks():
    http = HttpExchange(status=None, body="a ``` b", error="connection refused")
    md = reports.stage_markdown(stage("allow", http=http))
    assert "**HTTP no answer (connection refused)**" in md and "\n````\na ``` b\n````" in md


def test_summary_rows_and_markdown_list_every_stage(run):
    rows = reports.summary_rows(run)
    assert rows[1] == {"stage": "restart", "outcome": "passed (flaky)", "duration_s": 1.25, "retries": 2, "codes": ""}
    assert [r["codes"] for r in rows] == ["MID006", "", "MID060", ""]
    md = reports.run_summary_markdown(run)
    assert md.splitlines()[0] == "## kind-a / example.org: FAILED at stage `deny`"
    assert "| deny | FAILED | 1.25 | 0 | MID060 |" in md
    assert "| allow | skipped |" in md and "| kong-mesh chart | 2.12.3 |" in md
    assert "/runs/run-7/diagnostics" in md
    assert md.index("/runs/run-7/diagnostics") < md.index("### deny: FAILED")  # then each stage's checks and hints
    assert [line for line in md.splitlines() if line.startswith("### ")] == [
        reports.stage_markdown(s).splitlines()[0] for s in run.stages]


def test_touched_rows(run):
    assert reports.touched_rows(run.stages[1]) == [
        {"kind": "Pod", "namespace": "kong-mesh-demo", "name": "kv-1", "action": "restarted",
         "detail": "token=<redacted>"}
    ]


def test_markdown_table_escapes_html_pipes_and_newlines():
    table = reports.markdown_table(["a"], [["x|y\nz"], [None], [f"<b>&</b> token: {TOKEN}"]])
    assert table.splitlines() == [
        "| a |", "| --- |", "| x\\|y<br>z |", "|  |", "| &lt;b&gt;&amp;&lt;/b&gt; token: &lt;redacted&gt; |"
    ]


def test_an_interrupted_run_names_the_signal_and_stages_in_json_junit_and_markdown(tmp_path):
    stopped = StageResult.from_checks("install", [], started_at=T0, ended_at=T0 + timedelta(seconds=1),
                                      error="interrupted by SIGTERM", interrupted=True)
    never = stage("demo", outcome=Outcome.SKIPPED, error="not started: the run was interrupted by SIGTERM")
    report = RunReport.build(run_id="run-8", target=TargetRef(name="a", provider="sandbox"), trust_domain="x.org",
                             stages=[stage("preflight"), stopped, never, stage("cleanup")], versions={},
                             started_at=T0, ended_at=T0 + timedelta(seconds=3), signal="SIGTERM",
                             interrupted_stages=["install"])
    doc = json.loads(reports.write_json(report, tmp_path / "r.json").read_text())
    assert (doc["outcome"], doc["signal"], doc["interrupted_stages"]) == ("interrupted", "SIGTERM", ["install"])
    assert [s["outcome"] for s in doc["stages"]] == ["passed", "interrupted", "skipped", "passed"]
    root = ET.fromstring(reports.junit_xml([report]).split("\n", 1)[1])
    assert (root.get("failures"), root.get("errors"), root.get("skipped")) == ("0", "1", "1")
    error = root.find(".//testcase[@name='install']/error")
    assert error is not None and error.get("type") == "interrupted" and "SIGTERM" in error.get("message")
    assert "INTERRUPTED by SIGTERM at `install`" in reports.run_summary_markdown(report)
