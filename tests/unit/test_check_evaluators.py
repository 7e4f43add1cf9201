"""One evaluator per check: each code is judged by exactly one function, registered where it is defined; the stages
and `meshid check` judge a check only through its record, and a module that judges a check imports its evaluator."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections import Counter
from pathlib import Path

import pytest

import meshid
from meshid import checks
from meshid.checks import CATALOGUE, CheckSpec
from meshid.results import Outcome, Severity

ROOT = Path(meshid.__file__).resolve().parents[1]
LAYERS = ("meshid", "tasks", "flows", "cli")
NEVER_JUDGED = {"MID082"}  # the fleet's tag for a target whose run never reported: no check result is made for it


def _sources() -> dict[str, ast.Module]:
    """Every module of the library and the layers above it, parsed, by dotted name."""
    found = {}
    for path in sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text(encoding="utf-8"))
    return found


SOURCES = _sources()


def _code(node: ast.AST) -> str | None:
    """`MIDnnn` for an expression `checks.MIDnnn`."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "checks" \
            and re.fullmatch(r"MID\d+", node.attr):
        return node.attr
    return None


def _registrations() -> dict[str, list[str]]:
    """Code -> the modules with an `@checks.evaluates(checks.MIDnnn, ...)` for it."""
    found: dict[str, list[str]] = {}
    for module, tree in SOURCES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "evaluates":
                for code in filter(None, map(_code, node.args)):
                    found.setdefault(code, []).append(module)
    return found


def _judged(tree: ast.Module) -> set[str]:
    """Codes a module judges: `checks.MIDnnn.result/evaluate/failed(...)` or `out.check(checks.MIDnnn, ...)`."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr in {"result", "evaluate", "failed"} and (code := _code(node.func.value)):
            found.add(code)
        elif node.func.attr == "check" and node.args and (code := _code(node.args[0])):
            found.add(code)
    return found


def _imports(module: str) -> set[str]:
    """The modules `module` imports, directly or through the modules it imports (packages on the way included)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name not in SOURCES:
            continue
        seen.add(name)
        todo += [name.rpartition(".")[0]] if "." in name else []
        for node in ast.walk(SOURCES[name]):
            if isinstance(node, ast.ImportFrom) and node.module:
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
    return seen


def test_every_check_has_exactly_one_evaluator():
    registered = _registrations()
    assert {code for code, modules in registered.items() if len(modules) > 1} == set()
    assert set(registered) == set(CATALOGUE) - NEVER_JUDGED
    for info in pkgutil.walk_packages(meshid.__path__, "meshid."):
        importlib.import_module(info.name)
    importlib.import_module("flows.fleet")
    for code, [module] in registered.items():
        assert CATALOGUE[code].evaluator.__module__ == module


def test_no_module_outside_the_catalogue_builds_a_judgement():
    """A result is made only by a record from its evaluator's judgement (`result`), or failed because its facts could
    not be observed (`failed`): never from a boolean written at the call site."""
    offenders = []
    for module, tree in SOURCES.items():
        if module == "meshid.checks":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "meshid.checks" and \
                    any(alias.name == "result" for alias in node.names):
                offenders.append(f"{module}:{node.lineno} imports checks.result")
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "result" and isinstance(func.value, ast.Name) \
                    and func.value.id == "checks":
                offenders.append(f"{module}:{node.lineno} calls checks.result")
            if isinstance(func, ast.Name) and func.id == "CheckResult":
                offenders.append(f"{module}:{node.lineno} builds a CheckResult")
            if isinstance(func, ast.Attribute) and func.attr == "check" and len(node.args) > 1 and \
                    _code(node.args[0]) and isinstance(node.args[1], ast.Constant) and \
                    isinstance(node.args[1].value, bool):
                offenders.append(f"{module}:{node.lineno} checks {_code(node.args[0])} with a literal boolean")
    assert offenders == []


def test_a_module_that_judges_a_check_imports_its_evaluator():
    """The evaluator is registered when its module is imported: whoever judges the check imports that module."""
    registered = _registrations()
    missing = {module: sorted(code for code in codes if registered[code][0] not in _imports(module))
               for module, tree in SOURCES.items() if (codes := _judged(tree) - NEVER_JUDGED)}
    assert {module: codes for module, codes in missing.items() if codes} == {}
    assert _judged(SOURCES["meshid.health"]) >= {"MID010", "MID030", "MID061"}  # the walk sees the judging calls


def test_a_record_judges_through_its_evaluator():
    from meshid import registration
    from meshid.models import parse_params

    params = parse_params({})
    guide = {"metadata": {"name": registration.GUIDE_CR}, "spec": {}}  # no className: SPIRE ignores it
    ok, seen = checks.MID031.evaluate([guide], params)
    found = checks.MID031.result([guide], params)
    assert not ok and (found.code, found.outcome, found.severity) == ("MID031", Outcome.FAILED, Severity.WARN)
    assert (found.message, found.hint) == (seen, checks.MID031.hint) and "no className" in seen
    passed = checks.MID031.result([], params)
    assert passed.outcome is Outcome.PASSED and passed.hint is None


def test_a_check_whose_facts_were_not_observed_fails_with_why():
    found = checks.MID030.failed("gave up waiting for a reconciled ClusterSPIFFEID after 5s; last seen: nothing yet")
    assert (found.outcome, found.hint) == (Outcome.FAILED, checks.MID030.hint) and found.message.startswith("gave up")


def test_a_second_evaluator_fails_where_it_is_registered(monkeypatch):
    monkeypatch.setattr(checks, "_EVALUATORS", {})
    spec = CheckSpec("MID998", "a check", Severity.FAIL, "fix it")
    with pytest.raises(LookupError, match="MID998 has no evaluator"):
        spec.evaluate()

    @checks.evaluates(spec)
    def first() -> checks.Judgement:
        return True, "one"

    assert spec.result().message == "one" and Counter(checks._EVALUATORS.values()) == Counter([first])
    with pytest.raises(RuntimeError, match="MID998 is evaluated by .*first already"):
        checks.evaluates(spec)(lambda: (False, "two"))
