"""RunContext.install and apply_all on the sandbox: the ledger knows what each changed, so undo restores exactly that."""

from __future__ import annotations

import uuid

import pytest

from meshid.kube import ApiError
from meshid.ledger import AppliedObject, AppliedRelease
from meshid.models import ChartSource, parse_params
from meshid.settings import MeshidSettings
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


def _context(sandbox_cluster, tmp_path) -> RunContext:
    params = parse_params({"target": {"name": "ctx-install", "provider": "context",
                                      "kubeconfig": str(sandbox_cluster.kubeconfig)}})
    ctx = RunContext.create(params, MeshidSettings(runs_dir=tmp_path / "runs"))
    return ctx.on(ctx.provider.start(60))


def _hello(chart_repo_url: str) -> ChartSource:
    return ChartSource(repo=chart_repo_url, chart="hello", version="0.1.0")


def _actions(out: StageOutput) -> list[str]:
    return [t.action for t in out.touched if t.kind == "HelmRelease"]


def test_a_release_new_to_a_namespace_the_run_created_is_recorded_as_installed_and_again_as_upgraded(
        sandbox_cluster, chart_repo_url, tmp_path):
    ctx, ns, out = _context(sandbox_cluster, tmp_path), f"ri-{uuid.uuid4().hex[:6]}", StageOutput()
    try:
        ctx.install(_hello(chart_repo_url), "hello", ns, [], out)
        ctx.install(_hello(chart_repo_url), "hello", ns, ["replicas=1"], out)  # a retried stage installs again
        assert _actions(out) == ["installed", "upgraded"]
        assert ctx.ledger.entries == [AppliedObject("v1", "Namespace", ns, None, True),
                                      AppliedRelease("hello", ns, None)]
    finally:
        ctx.helm.uninstall("hello", ns, 60)
        ctx.cluster.delete("v1", "Namespace", ns)


def test_a_release_that_was_there_before_the_run_keeps_its_revision_for_rollback(sandbox_cluster, chart_repo_url,
                                                                                 tmp_path):
    ctx, ns, out = _context(sandbox_cluster, tmp_path), f"rp-{uuid.uuid4().hex[:6]}", StageOutput()
    try:
        ctx.helm.upgrade_install("hello", "hello", ns, repo=chart_repo_url, version="0.1.0", timeout_s=60, wait=False)
        ctx.install(_hello(chart_repo_url), "hello", ns, ["replicas=1"], out)
        assert _actions(out) == ["upgraded"]
        assert ctx.ledger.entries == [AppliedRelease("hello", ns, 1)]
    finally:
        ctx.helm.uninstall("hello", ns, 60)
        ctx.cluster.delete("v1", "Namespace", ns)


def _config_map(ns: str, name: str, data: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": data or {"k": name}}


def test_apply_all_makes_the_namespace_first_and_records_and_touches_in_the_given_order(sandbox_cluster, tmp_path):
    ctx, ns, out = _context(sandbox_cluster, tmp_path), f"aa-{uuid.uuid4().hex[:6]}", StageOutput()
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            *[_config_map(ns, f"cm-{i}") for i in range(6)]]
    try:
        ctx.apply_all([objs[0], _config_map(ns, "cm-0", {"k": "before"})], out)  # cm-0 exists, with other data
        out = StageOutput()
        applied = ctx.apply_all(objs, out)
        assert [o["metadata"]["name"] for o in applied] == [ns] + [f"cm-{i}" for i in range(6)]
        assert [(t.name, t.action) for t in out.touched] == \
            [(ns, "unchanged"), ("cm-0", "configured")] + [(f"cm-{i}", "created") for i in range(1, 6)]
        out = StageOutput()
        ctx.apply_all(objs, out)  # everything as wanted already: the apply is a no-op
        assert {t.action for t in out.touched} == {"unchanged"}
        for i in range(6):
            cm = ctx.cluster.get("v1", "ConfigMap", f"cm-{i}", ns)
            assert cm["data"] == {"k": f"cm-{i}"} and ctx.run_id in str(cm["metadata"].get("annotations"))
            assert ctx.ledger.recorded(AppliedObject("v1", "ConfigMap", f"cm-{i}", ns, i > 0)) is not None
    finally:
        ctx.cluster.delete("v1", "Namespace", ns)


def test_apply_all_raises_the_first_failure_after_every_other_object_was_applied_and_recorded(sandbox_cluster,
                                                                                              tmp_path):
    ctx, ns, out = _context(sandbox_cluster, tmp_path), f"af-{uuid.uuid4().hex[:6]}", StageOutput()
    bad = _config_map(ns, "Not_A_Valid_Name")
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            _config_map(ns, "before"), bad, _config_map(ns, "after")]
    try:
        with pytest.raises(ApiError, match="Not_A_Valid_Name"):
            ctx.apply_all(objs, out)
        assert ctx.cluster.get("v1", "ConfigMap", "before", ns) is not None
        assert ctx.cluster.get("v1", "ConfigMap", "after", ns) is not None
        assert ctx.ledger.recorded(AppliedObject("v1", "ConfigMap", "Not_A_Valid_Name", ns, True)) is not None
    finally:
        ctx.cluster.delete("v1", "Namespace", ns)


def test_a_release_already_as_wanted_is_left_alone_and_an_upgrade_keeps_the_operators_values(
        sandbox_cluster, chart_repo_url, tmp_path):
    ctx, ns, out = _context(sandbox_cluster, tmp_path), f"ru-{uuid.uuid4().hex[:6]}", StageOutput()
    try:
        ctx.helm.upgrade_install("hello", "hello", ns, repo=chart_repo_url, version="0.1.0", timeout_s=60, wait=False,
                                 values=["message=the operator's", "replicas=1"])
        ctx.install(_hello(chart_repo_url), "hello", ns, ["replicas=1"], out)
        assert _actions(out) == ["unchanged"] and ctx.ledger.entries == []
        assert ctx.helm.status("hello", ns).revision == 1, "no revision (and no hooks) for nothing"
        ctx.install(_hello(chart_repo_url), "hello", ns, ["replicas=3"], out)
        assert _actions(out) == ["unchanged", "upgraded"]
        assert ctx.helm.values("hello", ns) == {"message": "the operator's", "replicas": 3}
    finally:
        ctx.helm.uninstall("hello", ns, 60)
        ctx.cluster.delete("v1", "Namespace", ns)
