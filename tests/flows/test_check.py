"""`meshid check` on a cluster the guide configured: passes, then names what breaks when identity is removed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

from flows.guide import guide
from meshid.kube import Cluster
from meshid.models import parse_params
from meshid.terminal import one_line
from sandbox import lifecycle


def _check(kubeconfig) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "cli", "check", "--kubeconfig", str(kubeconfig), "-o", "json"],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_check_passes_on_a_configured_cluster_and_fails_with_a_hint_when_identity_is_removed():
    info = lifecycle.up(f"check-{uuid.uuid4().hex[:4]}", tick_s=0.5)
    try:
        params = parse_params({"target": {"name": "kept", "provider": "context", "kubeconfig": str(info.kubeconfig)},
                               "charts": {"mirror": info.chart_repo_url}, "cleanup": "never"})
        assert guide(params=params, return_state=True).is_completed()
        code, report = _check(info.kubeconfig)
        failed = [c for c in report["checks"] if c["outcome"] == "failed" and c["severity"] == "fail"]
        assert code == 0 and report["outcome"] == "passed", failed
        passed = {c["code"] for c in report["checks"] if c["outcome"] == "passed"}
        assert {"MID010", "MID020", "MID022", "MID023", "MID030", "MID032", "MID040", "MID050", "MID051", "MID061",
                "MID063"} <= passed

        cluster = Cluster(info.kubeconfig)
        cluster.delete("kuma.io/v1alpha1", "MeshIdentity", "identity-spire", "kong-mesh-system")
        cluster.wait("MeshIdentity deleted", "kuma.io/v1alpha1", "MeshIdentity", lambda objs: (not objs, str(len(objs))),
                     60, namespace="kong-mesh-system")
        code, report = _check(info.kubeconfig)
        mid040 = [c for c in report["checks"] if c["code"] == "MID040"]
        assert code == 1 and report["outcome"] == "failed"
        assert mid040[0]["outcome"] == "failed" and mid040[0]["hint"]
        table = subprocess.run([sys.executable, "-m", "cli", "check", "--kubeconfig", str(info.kubeconfig)],
                               capture_output=True, text=True, timeout=120)
        lines = table.stdout.splitlines()
        at = lines.index(f"× MID040 {one_line(mid040[0]['message'])}")
        assert lines[at + 1] == f"    hint: {mid040[0]['hint']}" and lines[-1] == "Status check results are ×"
        assert f"√ MID010 {one_line(next(c for c in report['checks'] if c['code'] == 'MID010')['message'])}" in lines
    finally:
        lifecycle.down(info.name)


def test_check_says_traffic_is_not_mtls_when_kv_runs_without_a_sidecar():
    info = lifecycle.up(f"check-{uuid.uuid4().hex[:4]}", tick_s=0.5)
    try:
        params = parse_params({"target": {"name": "kept", "provider": "context", "kubeconfig": str(info.kubeconfig)},
                               "charts": {"mirror": info.chart_repo_url}, "cleanup": "never"})
        assert guide(params=params, return_state=True).is_completed()
        cluster = Cluster(info.kubeconfig)
        # Kuma's per-pod opt-out, the pod label kuma.io/sidecar-injection (kumahq/kuma 2.12.3
        # pkg/plugins/runtime/k8s/webhooks/injector/precheck.go): kv restarts without kuma-sidecar, its inbound plaintext
        cluster.patch("apps/v1", "Deployment", "kv", {"spec": {"template": {"metadata": {"labels": {
            "kuma.io/sidecar-injection": "disabled"}}}}}, "kong-mesh-demo")
        cluster.wait_rollout("kong-mesh-demo", "kv", 60)
        code, report = _check(info.kubeconfig)
        mid063 = next(c for c in report["checks"] if c["code"] == "MID063")
        assert code == 1 and mid063["outcome"] == "failed" and "no sidecar" in mid063["message"] and mid063["hint"]
    finally:
        lifecycle.down(info.name)
