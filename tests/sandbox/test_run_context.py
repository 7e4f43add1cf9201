"""RunContext.install on the sandbox: the ledger knows what each install changed, so undo restores exactly that."""

from __future__ import annotations

import uuid

from meshid.ledger import AppliedObject, AppliedRelease
from meshid.models import ChartSource, parse_params
from meshid.settings import MeshidSettings
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput


def _context(sandbox_cluster, tmp_path) -> RunContext:
    params = parse_params({"target": {"name": "ctx-install", "provider": "context",
                                      "kubeconfig": str(sandbox_cluster.kubeconfig)}})
    ctx = RunContext.create(params, MeshidSettings(runs_dir=tmp_path / "runs"))
    ctx.handle = ctx.provider.start(60)
    return ctx


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
