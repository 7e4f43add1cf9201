"""Run reports as JSON, JUnit XML and markdown; every value from a run is redacted on its way out."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshid.redact import redact
from meshid.results import HttpExchange, Outcome, RunReport, StageResult
from meshid.terminal import ASCII_MARKS, check_line

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _scrub(value: Any) -> Any:
    """`value` with every string in it, however nested in dicts and lists, redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _word(outcome: Outcome) -> str:
    return outcome.value.upper() if outcome in (Outcome.FAILED, Outcome.INTERRUPTED) else outcome.value


def _stage_word(stage: StageResult) -> str:
    return "passed (flaky)" if stage.flaky else _word(stage.outcome)


def _http_line(http: HttpExchange) -> str:
    status = "no answer" if http.status is None else str(http.status)
    return f"HTTP {status} ({http.error})" if http.error else f"HTTP {status}"


# JSON


def write_json(report: RunReport, path: str | Path) -> Path:
    """Write the redacted `RunReport.to_json_dict()` to `path`, creating its directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_scrub(report.to_json_dict()), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# JUnit XML


def _x(text: str) -> str:
    """Redacted text that XML 1.0 can carry (ElementTree escapes the rest)."""
    return _XML_INVALID.sub("\ufffd", redact(text))


def _testcase(stage: StageResult, classname: str) -> ET.Element:
    case = ET.Element("testcase", classname=_x(classname), name=_x(stage.name), time=f"{stage.duration_s:.3f}")
    if stage.outcome is Outcome.FAILED:
        blocking = [c for c in stage.failed_checks if c.blocking]
        if blocking:
            message, kind = f"{', '.join(c.code for c in blocking)}: {blocking[0].message}", blocking[0].code
        else:
            message, kind = stage.error or "stage failed", "error"
        lines = [check_line(c, ASCII_MARKS) for c in blocking]
        lines += [f"error: {stage.error}"] if stage.error else []
        lines += [f"{_http_line(stage.http)}\n{stage.http.body}"] if stage.http else []
        failure = ET.SubElement(case, "failure", message=_x(message), type=kind)
        failure.text = _x("\n".join(lines))
    elif stage.outcome is Outcome.SKIPPED:
        ET.SubElement(case, "skipped", {"message": _x(stage.error)} if stage.error else {})
    elif stage.outcome is Outcome.INTERRUPTED:  # not the stage's fault: an error, not a failure
        ET.SubElement(case, "error", message=_x(stage.error or "interrupted"), type="interrupted")
    out = [check_line(c, ASCII_MARKS) for c in stage.warnings]
    out += [f"flaky: passed after {stage.attempts} attempts"] if stage.flaky else []
    if out:
        ET.SubElement(case, "system-out").text = _x("\n".join(out))
    return case


def _counts(stages: Sequence[StageResult]) -> dict[str, str]:
    return {
        "tests": str(len(stages)),
        "failures": str(sum(s.outcome is Outcome.FAILED for s in stages)),
        "errors": str(sum(s.outcome is Outcome.INTERRUPTED for s in stages)),
        "skipped": str(sum(s.outcome is Outcome.SKIPPED for s in stages)),
    }


def _testsuite(report: RunReport) -> ET.Element:
    target, td = report.target, report.trust_domain
    suite = ET.Element(
        "testsuite",
        name=_x(f"meshid {target.name} ({target.provider}) {td}"),
        timestamp=report.started_at.isoformat(),
        time=f"{report.duration_s:.3f}",
        **_counts(report.stages),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in {"run_id": report.run_id, **{f"version.{k}": v for k, v in report.versions.items()}}.items():
        ET.SubElement(props, "property", name=_x(name), value=_x(value))
    suite.extend(_testcase(s, f"meshid.{target.name}.{td}") for s in report.stages)
    return suite


def junit_xml(reports: Sequence[RunReport], suite_name: str = "meshid") -> str:
    """JUnit XML: one <testsuite> per run, one <testcase> per stage; failures, skips and warnings marked."""
    stages = [s for r in reports for s in r.stages]
    root = ET.Element(
        "testsuites", name=_x(suite_name), time=f"{sum(r.duration_s for r in reports):.3f}", **_counts(stages)
    )
    root.extend(_testsuite(r) for r in reports)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(reports: Sequence[RunReport], path: str | Path, suite_name: str = "meshid") -> Path:
    """Write `junit_xml(reports, suite_name)` to `path`, creating its directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(reports, suite_name), encoding="utf-8")
    return path


# Markdown and table rows for artifacts


def _cell(value: Any) -> str:
    """Redacted text safe in a table cell: HTML-escaped, so `<redacted>` shows and nothing renders as markup."""
    text = "" if value is None else html.escape(redact(str(value)), quote=False)
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; cells are redacted and escaped (HTML, pipes, newlines), None rendered empty."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(_cell(c) for c in line) + " |" for line in lines)


def _fenced(text: str) -> str:
    """`text` redacted in a code block whose fence no backtick run inside can close."""
    text = redact(text)
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{fence}\n{text}\n{fence}"


def stage_markdown(stage: StageResult) -> str:
    """A stage's summary: outcome, duration, attempts, its checks with hints, the HTTP answer and any error."""
    parts = [
        f"### {_cell(stage.name)}: {_stage_word(stage)}",
        f"duration {stage.duration_s:.1f} s, attempts {stage.attempts}",
    ]
    if stage.checks:
        parts.append(
            markdown_table(
                ["code", "severity", "outcome", "message", "hint"],
                [[c.code, c.severity, _word(c.outcome), c.message, c.hint] for c in stage.checks],
            )
        )
    if stage.http:
        parts += [f"**{_cell(_http_line(stage.http))}**", _fenced(stage.http.body)]
    if stage.error:
        parts += ["**error**", _fenced(stage.error)]
    return "\n\n".join(parts) + "\n"


def touched_rows(stage: StageResult) -> list[dict[str, Any]]:
    """Rows (kind, namespace, name, action, detail) of what the stage touched, for a table artifact."""
    return [_scrub(t.model_dump(mode="json")) for t in stage.touched]


_SUMMARY_COLUMNS = ("stage", "outcome", "duration_s", "retries", "codes")


def summary_rows(report: RunReport) -> list[dict[str, Any]]:
    """One row per stage: outcome, duration, retries and the codes of its failed checks."""
    rows = [(s.name, _stage_word(s), round(s.duration_s, 3), s.attempts - 1, ", ".join(s.codes)) for s in report.stages]
    return [_scrub(dict(zip(_SUMMARY_COLUMNS, row))) for row in rows]


def run_summary_markdown(report: RunReport) -> str:
    """The run at a glance: outcome and failed stage first, then every stage, the versions and diagnostics, then each
    stage's checks with their hints."""
    if report.signal:
        verdict = f"INTERRUPTED by {report.signal} at `{report.stopped_at}`"
    elif report.failed_stage:
        verdict = f"FAILED at stage `{report.failed_stage}`"
    else:
        verdict = _word(report.outcome)
    parts = [
        f"## {_cell(report.target.name)} / {_cell(report.trust_domain)}: {_cell(verdict)}",
        _cell(
            f"run {report.run_id}, provider {report.target.provider}, started {report.started_at.isoformat()}, "
            f"{report.duration_s:.1f} s"
        ),
        markdown_table(_SUMMARY_COLUMNS, [list(r.values()) for r in summary_rows(report)]),
        markdown_table(["component", "version"], sorted(report.versions.items())),
    ]
    if report.diagnostics_dir:
        parts.append(f"diagnostics: {_cell(report.diagnostics_dir)}")
    parts += [stage_markdown(stage).rstrip("\n") for stage in report.stages]  # each stage's checks and hints
    return "\n\n".join(parts) + "\n"
