"""The check catalogue: stable codes, severities, hints and its markdown rendering."""

from __future__ import annotations

import dataclasses
import re

import pytest

from meshid import checks
from meshid.checks import CATALOGUE, MID031, CheckSpec, doc, result
from meshid.results import Outcome, Severity

WARN_CODES = {"MID006", "MID007", "MID008", "MID013", "MID031", "MID062", "MID090"}
ALL_CODES = {
    *WARN_CODES,
    *"MID001 MID002 MID003 MID004 MID005 MID010 MID011 MID012 MID014 MID020 MID021 MID022 MID023 MID030".split(),
    *"MID032 MID040 MID041 MID050 MID051 MID060 MID061 MID063 MID064 MID065 MID070 MID080 MID081 MID082".split(),
    "MID091",
}


def test_codes_are_stable_and_well_formed():
    assert set(CATALOGUE) == ALL_CODES
    for code, spec in CATALOGUE.items():
        assert re.fullmatch(r"MID\d{3}", code)
        assert spec.code == code
        assert spec.title.strip() and spec.hint.strip()
        assert "<" not in spec.hint + spec.title, "markdown cells are HTML-escaped: no <placeholders> in code spans"


def test_severities():
    assert {c for c, s in CATALOGUE.items() if s.severity is Severity.WARN} == WARN_CODES


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOGUE["MID001"].hint = "x"  # type: ignore[misc]


def test_every_check_is_a_constant_named_after_its_code_and_in_the_catalogue():
    constants = {name: spec for name, spec in vars(checks).items() if isinstance(spec, CheckSpec)}
    assert all(name == spec.code for name, spec in constants.items())
    assert len({spec.code for spec in constants.values()}) == len(constants)
    assert list(CATALOGUE.values()) == list(constants.values())


def test_result_takes_severity_from_the_catalogue_and_hints_only_failures():
    ok, bad = result(MID031, True, "className set"), result(MID031, False, "no className")
    assert (ok.outcome, ok.severity, ok.hint) == (Outcome.PASSED, Severity.WARN, None)
    assert (bad.outcome, bad.severity, bad.hint) == (Outcome.FAILED, Severity.WARN, CATALOGUE["MID031"].hint)
    assert bad.message == "no className"


def test_an_unknown_code_fails_where_it_is_named():
    with pytest.raises(AttributeError):
        checks.MID999  # the attribute access is the test


def test_doc_is_a_table_with_one_row_per_code():
    lines = doc().splitlines()
    assert lines[0] == "| code | severity | check | hint |"
    assert len(lines) == 2 + len(CATALOGUE)
    assert [line.split(" | ")[0].lstrip("| ") for line in lines[2:]] == list(CATALOGUE)
