"""The stage registry: one record per stage, a task for each, the graph of each mode, and what a failure collects."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from meshid.checks import CATALOGUE
from meshid.models import RunMode, parse_params
from meshid.stages import registry
from meshid.stages.registry import CLEANUP, STAGES, graph

ROOT = Path(__file__).resolve().parents[2]
VALIDATE_ORDER = ("preflight", "cluster-start", "install-kong-mesh", "apply-demo", "install-spire", "enable-injection",
                  "register-spiffe-ids", "apply-mesh-identity", "restart-workloads", "connectivity-before-permission",
                  "apply-permission", "connectivity-after-permission", "connectivity-probe", "cleanup")
ROLLOUT_ORDER = ("preflight", "cluster-start", "install-kong-mesh", "apply-demo", "apply-permission", "install-spire",
                 "enable-injection", "register-spiffe-ids", "apply-mesh-identity", "restart-workloads",
                 "connectivity-after-permission", "connectivity-probe", "cleanup")


def test_each_mode_takes_the_stages_in_the_reports_order():
    assert graph(RunMode.VALIDATE).order == VALIDATE_ORDER
    assert graph(RunMode.ROLLOUT).order == ROLLOUT_ORDER


def test_stage_names_are_unique_and_every_graph_stage_has_a_record():
    names = [stage.name for stage in STAGES]
    assert len(names) == len(set(names))
    for mode in RunMode:
        assert set(graph(mode).order) <= set(names)


@pytest.mark.parametrize("mode", list(RunMode))
def test_a_stage_waits_only_for_stages_before_it_and_cleanup_follows_them_all(mode):
    g = graph(mode)
    seen: set[str] = set()
    for name, deps in g.needs().items():
        assert set(deps) <= seen, f"{name} waits for a stage after it or outside its graph: {deps}"
        seen.add(name)
    assert g.order[-1] == CLEANUP.name and CLEANUP.name not in g.needs()


def test_every_record_has_exactly_one_task_named_after_it():
    from tasks.stage import TASKS

    assert list(TASKS) == [stage.name for stage in STAGES]
    assert all(task.name == name for name, task in TASKS.items())


def _named_checks(path: Path) -> set[str]:
    """The catalogue names a module uses: `checks.MIDnnn` and `from meshid.checks import MIDnnn`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and isinstance(node.value, ast.Name) and node.value.id == "checks"}
    found |= {alias.name for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module == "meshid.checks" for alias in node.names}
    return {name for name in found if re.fullmatch(r"MID\d+", name)}


def test_every_check_a_stage_emits_is_in_the_catalogue():
    """An attribute named in a branch that rarely runs fails only when it runs: every name is looked up here."""
    modules = [*(ROOT / "meshid").rglob("*.py"), *(ROOT / "flows").glob("*.py"), *(ROOT / "cli").glob("*.py")]
    named = {path.relative_to(ROOT).as_posix(): _named_checks(path) for path in modules}
    assert any(named[f"meshid/stages/{m}.py"] for m in ("preflight", "install_spire", "connectivity"))
    unknown = {module: sorted(codes - set(CATALOGUE)) for module, codes in named.items() if codes - set(CATALOGUE)}
    assert not unknown


def test_a_failure_late_in_the_run_collects_what_every_stage_it_stands_on_put_in_place():
    p = parse_params({"namespaces": {"spire": "spire-system", "spire_release": "id"}})
    found = graph(RunMode.VALIDATE).evidence(["connectivity-after-permission"], p)
    assert set(found.namespaces) >= {"kong-mesh-system", "kong-mesh-demo", "spire-system"}
    assert set(found.releases) >= {("kong-mesh", "kong-mesh-system"), ("id", "spire-system"),
                                   ("spire-crds", "spire-system")}
    assert {kind for _, kind in found.kinds} >= {"Mesh", "MeshIdentity", "MeshTrafficPermission", "MeshService",
                                                 "ClusterSPIFFEID"}


def test_an_early_failure_collects_what_explains_it():
    p = parse_params({})
    found = graph(RunMode.VALIDATE).evidence(["install-spire"], p)
    assert found == registry.spire(p)
    assert graph(RunMode.VALIDATE).evidence(["preflight"], p) == registry.Evidence()
    both = graph(RunMode.ROLLOUT).evidence(["install-kong-mesh", "install-spire"], p)
    assert both == registry.kong_mesh(p) | registry.spire(p)
