"""Diagnostics against the sandbox: events, pods, logs, custom resources and helm status land in files and a summary."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from meshid.diagnostics import collect
from meshid.helm import Helm
from meshid.kube import Cluster
from sandbox import binaries

WAIT_S = 60
SECRET = "hunter2-abcdef123456"
MISSING_KINDS = [("meshid.invalid/v1", "Missing"), ("apps/v1", "NoSuchKind")]


@pytest.fixture
def cluster(kubeconfig):
    found = Cluster(kubeconfig)
    yield found
    found.close()


@pytest.fixture
def namespace(cluster):
    """A fresh namespace holding a running pod, a Deployment, a pod that cannot be scheduled and a Warning event."""
    ns = f"d-{uuid.uuid4().hex[:8]}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        cluster.apply(_pod(ns, "solo"))
        cluster.apply(_pod(ns, "stuck", nodeSelector={"meshid.test/none": "x"}))
        cluster.apply(_deployment(ns, "web"))
        cluster.apply(_event(ns, "solo"))
        cluster.wait_rollout(ns, "web", WAIT_S)
        cluster.wait("pods solo Running and stuck unschedulable", "v1", "Pod", _solo_running_stuck_pending, WAIT_S,
                     namespace=ns)
        yield ns
    finally:
        cluster.delete("v1", "Namespace", ns)


def _pod(ns: str, name: str, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1",
                                     "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                     "volumes": [{"name": "scratch", "emptyDir": {}}], **spec}}


def _deployment(ns: str, name: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}


def _event(ns: str, pod: str) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{pod}.meshid-test", "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": ns},
            "reason": "MeshidTestWarning", "message": f"login failed with token={SECRET}", "type": "Warning",
            "firstTimestamp": now, "lastTimestamp": now, "count": 2, "source": {"component": "meshid-test"}}


def _solo_running_stuck_pending(pods: list[dict]) -> tuple[bool, str]:
    phases = {p["metadata"]["name"]: p.get("status", {}).get("phase") for p in pods}
    stuck = next((p for p in pods if p["metadata"]["name"] == "stuck"), {})
    unschedulable = any(c.get("type") == "PodScheduled" and c.get("status") == "False"
                        for c in stuck.get("status", {}).get("conditions", []))
    return phases.get("solo") == "Running" and unschedulable, str(phases)


def test_collect_writes_events_pods_resources_and_helm_status(cluster, kubeconfig, namespace, tmp_path):
    helm = Helm(kubeconfig, binary=str(binaries.bin_dir() / "helm"), home=tmp_path / "helm")
    out = tmp_path / "diag"
    diag = collect(cluster, helm, [namespace, "no-such-namespace"], [("absent", namespace)], out,
                   [("apps/v1", "Deployment"), *MISSING_KINDS])

    events = (out / f"events-{namespace}.txt").read_text()
    assert "Warning MeshidTestWarning Pod/solo: login failed with token=<redacted> (x2)" in events
    pods = {p["name"]: p for p in json.loads((out / f"pods-{namespace}.json").read_text())}
    assert pods["solo"]["phase"] == "Running" and "scratch" in pods["solo"]["volumes"]
    assert pods["solo"]["containers"][0]["name"] == "app" and pods["stuck"]["phase"] == "Pending"
    assert any(p["metadata"]["name"] == "web" for p in json.loads((out / "resources/Deployment.json").read_text()))
    assert json.loads((out / "helm-absent.json").read_text())["installed"] is False
    assert (out / "summary.md").read_text() == diag.markdown()
    assert all(path.is_file() and path.is_relative_to(out) for path in diag.files)

    notes = "\n".join(diag.notes)
    assert "Missing (meshid.invalid/v1): not served" in notes and "NoSuchKind (apps/v1): not served" in notes
    assert "namespace no-such-namespace does not exist" in notes
    assert [e for e in diag.errors if not e.startswith("logs of")] == []  # log tails depend on the node emulation

    summary = diag.markdown()
    assert f"### Namespace `{namespace}`" in summary and "MeshidTestWarning" in summary
    assert "| stuck | Pending | PodScheduled:" in summary and "| solo |" not in summary
    assert "| Deployment | " in summary and "| Available | True |" in summary
    assert SECRET not in summary and all(SECRET not in p.read_text() for p in diag.files)


def test_one_failing_step_does_not_stop_the_others(cluster, kubeconfig, namespace, tmp_path):
    broken = Helm(tmp_path / "no-kubeconfig", binary=str(binaries.bin_dir() / "helm"), home=tmp_path / "helm")
    out = tmp_path / "diag"
    diag = collect(cluster, broken, [namespace], [("absent", namespace)], out, MISSING_KINDS)
    assert any(e.startswith(f"helm status {namespace}/absent: ") and "unreachable" in e for e in diag.errors)
    assert (out / f"events-{namespace}.txt").is_file() and (out / f"pods-{namespace}.json").is_file()
    assert "**could not collect** helm status" in diag.markdown()
