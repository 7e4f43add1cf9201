"""The guide flow on a world as harsh as a real cluster: SPIRE under any release name, the SPIFFE CSI driver that
injected pods wait for, SPIRE's own registration entries, kv's TLS handshakes, the datastore's StorageClass, and a
cleanup that also removes the CRDs and claims the charts leave behind.

Upstream facts these tests rely on, stated here as their own expectations:
- spire chart names (spiffe/helm-charts-hardened spire 0.30.0, `<component>.fullname`): release R in namespace N
  gives `R-server-0`, DaemonSets `R-agent` and `R-spiffe-csi-driver`, the claim `spire-data-R-server-0`.
- kubelet: a pod whose inline CSI volume's driver is not registered on its node gets FailedMount events saying
  `driver name csi.spiffe.io not found in the list of registered CSI drivers` (kubernetes pkg/volume/csi).
- spire-crds 0.6.0 annotates its CRDs `helm.sh/resource-policy: keep`; helm never deletes a chart's `crds/`
  (the Kong Mesh chart's kuma.io CRDs); StatefulSet claims outlive their StatefulSet.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from flows.guide import guide
from meshid.kube import Cluster
from meshid.models import parse_params
from sandbox import lifecycle
from tests.conftest import require_private_netns

pytestmark = pytest.mark.prefect
DEMO_ID = "spiffe://default.default.mesh.local/ns/kong-mesh-demo/sa/default"


@pytest.fixture(scope="module")
def world():
    """One sandbox for the module; every run on it is a `context` run that cleans up after itself."""
    require_private_netns()
    info = lifecycle.up(f"fidelity-{uuid.uuid4().hex[:4]}", tick_s=0.5)
    try:
        yield info
    finally:
        lifecycle.down(info.name)


@pytest.fixture
def faults(world):
    """Set fault knobs on the module's sandbox for one test, and clear them after it."""
    set_ = []

    def apply(**knobs):
        set_.extend(knobs)
        lifecycle.set_faults(world.name, **knobs)

    yield apply
    defaults = {"csi_driver_delay_s": 0.0, "csi_driver_absent": False, "no_default_storageclass": False,
                "registration_missing_namespaces": [], "svid_trust_domain": ""}
    lifecycle.set_faults(world.name, **{k: defaults[k] for k in set_})


def _run(world, tmp_path: Path, name: str, **params) -> tuple[object, dict]:
    report = tmp_path / f"{name}.json"
    data = {"target": {"name": name, "provider": "context", "kubeconfig": str(world.kubeconfig)},
            "charts": {"mirror": world.chart_repo_url}, **params}
    state = guide(params=parse_params(data), json_report=str(report), return_state=True)
    return state, json.loads(report.read_text())


def _stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


def _check(stage: dict, code: str) -> dict:
    return next(c for c in stage["checks"] if c["code"] == code)


def _leftovers(world) -> list[str]:
    """What a cleaned-up run must not leave: the guide's namespaces, kuma.io and spire.spiffe.io CRDs, claims."""
    cluster = Cluster(world.kubeconfig)
    namespaces, _ = cluster.list("v1", "Namespace")
    found = [f"namespace {n['metadata']['name']}" for n in namespaces
             if n["metadata"]["name"] in ("kong-mesh-system", "kong-mesh-demo", "spire", "identity")
             and not n["metadata"].get("deletionTimestamp")]
    crds, _ = cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    found += [f"crd {c['metadata']['name']}" for c in crds
              if c["spec"]["group"] in ("kuma.io", "spire.spiffe.io")]
    claims, _ = cluster.list("v1", "PersistentVolumeClaim")
    return found + [f"claim {c['metadata']['namespace']}/{c['metadata']['name']}" for c in claims]


def test_spire_under_another_release_and_namespace_passes_proves_entries_and_mtls_and_cleans_up_all(world, tmp_path):
    state, report = _run(world, tmp_path, "named", namespaces={"spire": "identity", "spire_release": "prod"})
    assert state.is_completed(), state.message
    spire = _stage(report, "install-spire")
    assert "prod-server-0 Ready" in _check(spire, "MID020")["message"]
    assert {"daemonset prod-agent", "daemonset prod-spiffe-csi-driver"} <= {
        c["message"].split(":")[0] for c in spire["checks"] if c["code"] == "MID021" and c["outcome"] == "passed"}
    entries = _check(_stage(report, "register-spiffe-ids"), "MID032")
    assert entries["outcome"] == "passed" and DEMO_ID in entries["message"]
    mtls = _check(_stage(report, "connectivity-after-permission"), "MID063")
    assert mtls["outcome"] == "passed" and "ssl.handshake" in mtls["message"]
    cleanup = _stage(report, "cleanup")
    assert cleanup["outcome"] == "passed", cleanup
    assert _leftovers(world) == []


def test_demo_pods_wait_for_a_late_csi_driver_and_the_run_passes(world, faults, tmp_path):
    faults(csi_driver_delay_s=8)
    state, report = _run(world, tmp_path, "late-csi")
    assert state.is_completed(), state.message  # the demo's pods waited as long as SPIRE's CSI driver took
    # install-kong-mesh and install-spire start together; apply-demo's pods can only start once the driver is ready
    waited = _stage(report, "install-kong-mesh")["duration_s"] + _stage(report, "apply-demo")["duration_s"]
    assert waited >= 8, "the demo's pods were Ready before SPIRE's CSI driver"
    assert _leftovers(world) == []


def test_a_csi_driver_that_never_comes_fails_naming_the_driver_and_the_waiting_pods(world, faults, tmp_path):
    faults(csi_driver_absent=True)
    state, report = _run(world, tmp_path, "no-csi", timeouts={"wait_s": 12})
    assert state.is_failed() and report["failed_stage"] == "apply-demo"
    mid014 = _check(_stage(report, "apply-demo"), "MID014")
    assert mid014["outcome"] == "failed" and mid014["hint"]
    assert "csi.spiffe.io" in mid014["message"] and "demo-app-" in mid014["message"] and "kv-" in mid014["message"]
    assert "spire-spiffe-csi-driver" in mid014["message"]
    assert any(c["code"] == "MID021" and c["outcome"] == "failed" and "spire-spiffe-csi-driver" in c["message"]
               for c in _stage(report, "install-spire")["checks"])
    assert _leftovers(world) == []


def test_missing_registration_entries_fail_naming_the_ids_while_pending_pods_elsewhere_do_not(world, faults, tmp_path):
    cluster = Cluster(world.kubeconfig)
    pending = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unschedulable", "namespace": "default"},
               "spec": {"nodeSelector": {"no-such": "node"}, "containers": [{"name": "c", "image": "busybox"}]}}
    cluster.apply(pending)
    try:
        state, report = _run(world, tmp_path, "pending-elsewhere")
        assert state.is_completed(), state.message  # a render failure of a pod in another namespace fails nothing
        assert "podEntryRenderFailures" in _check(_stage(report, "register-spiffe-ids"), "MID030")["message"]

        faults(registration_missing_namespaces=["kong-mesh-demo"])
        state, report = _run(world, tmp_path, "unregistered", timeouts={"wait_s": 8})
        assert state.is_failed() and report["failed_stage"] == "register-spiffe-ids"
        mid032 = _check(_stage(report, "register-spiffe-ids"), "MID032")
        assert mid032["outcome"] == "failed" and DEMO_ID in mid032["message"] and "kv-" in mid032["message"]
        assert "spire-server entry show" in mid032["hint"]
    finally:
        cluster.delete("v1", "Pod", "unschedulable", "default")
    assert _leftovers(world) == []


def test_no_default_storageclass_fails_in_seconds_with_the_fix_and_emptydir_needs_none(world, faults, tmp_path):
    faults(no_default_storageclass=True)
    state, report = _run(world, tmp_path, "no-storage")
    assert state.is_failed() and report["failed_stage"] == "preflight"  # an existing cluster: caught before changes
    mid023 = _check(_stage(report, "preflight"), "MID023")
    assert mid023["outcome"] == "failed" and "spire-data-spire-server-0" in mid023["message"]
    assert "persistence" in mid023["hint"] and "StorageClass" in mid023["hint"]
    state, report = _run(world, tmp_path, "emptydir", spire_persistence="emptyDir")
    assert state.is_completed(), state.message
    assert _leftovers(world) == []


def test_svids_of_another_trust_domain_leave_kv_without_a_certificate_and_the_run_says_so(world, faults, tmp_path):
    # Kuma asks SPIRE's agent (SDS) for the secret named by the rendered SPIFFE ID (kumahq/kuma 2.12.3
    # meshidentity/providers/spire/spire.go, sourceConfigurer(spiffeID)): an SVID of another trust domain never
    # answers it, so the proxy serves no certificate at all (Envoy's /certs lists none).
    faults(svid_trust_domain="other.example.org")
    state, report = _run(world, tmp_path, "foreign-svid", timeouts={"connectivity_s": 6})
    assert state.is_failed() and report["failed_stage"] == "connectivity-after-permission"
    after = _stage(report, "connectivity-after-permission")
    mid065 = _check(after, "MID065")
    assert mid065["outcome"] == "failed" and "no certificate" in mid065["message"] and DEMO_ID in mid065["message"]
    assert "trust domain" in mid065["hint"]
    assert _check(after, "MID061")["outcome"] == "failed"
    assert _leftovers(world) == []
