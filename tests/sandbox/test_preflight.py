"""A permission that already lets the demo in on an existing cluster: preflight warns, and the denial stage fails
at once instead of calling for its whole window."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import yaml

from meshid.conditions import is_true, named
from meshid.models import parse_params
from meshid.results import Outcome
from meshid.settings import MeshidSettings
from meshid.stages import connectivity, preflight
from meshid.stages.run_context import RunContext
from meshid.stages.runner import run_stage

MTP_CRD = Path(__file__).resolve().parents[2] / "sandbox/charts/kong-mesh/crds/kuma.io_meshtrafficpermissions.yaml"


def _preflight(sandbox_cluster, tmp_path, ns: str):
    params = parse_params({"target": {"name": "ctx-preflight", "provider": "context",
                                      "kubeconfig": str(sandbox_cluster.kubeconfig)},
                           "namespaces": {"demo": ns, "control_plane": f"{ns}-cp"}})
    ctx = RunContext.create(params, MeshidSettings(runs_dir=tmp_path / "runs"))
    result = run_stage("preflight", preflight.run, ctx)
    return ctx.on(result.cluster), result, next(c for c in result.checks if c.code == "MID008")


def test_a_permission_that_already_lets_the_demo_in_is_named_by_preflight_and_fails_the_denial_at_once(
        sandbox_cluster, tmp_path):
    ns = f"pf-{uuid.uuid4().hex[:6]}"
    ctx, result, check = _preflight(sandbox_cluster, tmp_path, ns)
    cluster = ctx.cluster
    crd = yaml.safe_load(MTP_CRD.read_text())
    created_crd = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"]) is None
    try:
        assert check.outcome is Outcome.PASSED, check.message  # no MeshTrafficPermission kind, or none in ns
        if created_crd:
            cluster.apply(crd)
            cluster.wait("MeshTrafficPermission CRD Established", "apiextensions.k8s.io/v1",
                         "CustomResourceDefinition", named(crd["metadata"]["name"],
                                                           lambda c: (is_true(c, "Established"), "not yet")), 60)
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        cluster.apply({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshTrafficPermission",
                       "metadata": {"name": "left-over", "namespace": ns, "labels": {"kuma.io/mesh": "default"}},
                       "spec": {"rules": [{"default": {"allow": [{"spiffeID": {
                           "type": "Prefix", "value": f"spiffe://default.default.mesh.local/ns/{ns}"}}]}}]}})

        ctx, result, check = _preflight(sandbox_cluster, tmp_path, ns)
        assert result.outcome is Outcome.PASSED and check.outcome is Outcome.FAILED  # a warning
        assert f"{ns}/left-over" in check.message and f"spiffe://default.default.mesh.local/ns/{ns}/sa/default" \
            in check.message

        started = time.monotonic()
        denial = run_stage("connectivity-before-permission", connectivity.before_permission, ctx)
        assert denial.outcome is Outcome.FAILED and time.monotonic() - started < 10
        assert [c.code for c in denial.failed_checks] == ["MID060"]
        assert "not probed" in denial.failed_checks[0].message and f"{ns}/left-over" in denial.failed_checks[0].message
    finally:
        cluster.delete("v1", "Namespace", ns)
        if created_crd:
            cluster.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])
