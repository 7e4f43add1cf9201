"""The world's kubelet: the hold kwok's pod-ready stage gets, and the status and events of a pod waiting for CSI."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from sandbox import kwokstages
from sandbox.emulator.kubelet import mount_failure, plugin_name, started_status, waiting_status

CSI = {"name": "kuma-spire-agent-socket", "csi": {"driver": "csi.spiffe.io", "readOnly": True}}


def pod(volumes=(), containers=({"name": "app", "image": "ghcr.io/kumahq/kuma-counter-demo"},), inits=(),
        annotations=None) -> dict:
    return {"metadata": {"name": "p", "namespace": "n", "uid": "u", "annotations": annotations or {}},
            "spec": {"nodeName": "node-0", "volumes": list(volumes), "containers": list(containers),
                     "initContainers": list(inits)},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}


CASES = {
    "plain": pod(),
    "csi": pod([CSI]),
    "csi started": pod([CSI], annotations={kwokstages.STARTED: "true"}),
    "configMap volume": pod([{"name": "c", "configMap": {"name": "x"}}]),
    "kubectl hook": pod(containers=[{"name": "job", "image": "registry.k8s.io/kubectl:v1.33.4"}]),
    "kubectl by digest": pod(containers=[{"name": "job", "image": "registry.k8s.io/kubectl@sha256:0"}]),
    "kubectl-like name": pod(containers=[{"name": "job", "image": "example.org/kubectl-tools:1"}]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_jq_hold_of_pod_ready_and_its_python_twin_agree(name):
    """kwok evaluates the selector key with gojq (pkg/utils/expression/query.go); jq agrees on this subset."""
    jq = shutil.which("jq")
    if jq is None:
        pytest.skip("jq is not installed (make install installs it)")
    done = subprocess.run([jq, "-c", kwokstages.MAY_START], input=json.dumps(CASES[name]), capture_output=True,
                          text=True, timeout=10, check=True)
    expected = not kwokstages.needs_kubelet(CASES[name]) or kwokstages.started(CASES[name])
    assert json.loads(done.stdout) is expected


def test_which_pods_the_world_kubelet_holds():
    assert [n for n in sorted(CASES) if kwokstages.needs_kubelet(CASES[n])] == \
        ["csi", "csi started", "kubectl by digest", "kubectl hook"]


def test_mount_failure_is_kubelets_text_for_an_unregistered_csi_driver():
    # kubernetes v1.36: operationexecutor generateVolumeMsg ("%v for volume %q %v" with ": <err>"), csi_mounter.go
    # SetUpAt ("mounter.SetUpAt failed to get CSI client: %v" behind "kubernetes.io/csi: "), csi_client.go
    assert mount_failure("kuma-spire-agent-socket", "csi.spiffe.io") == (
        'MountVolume.SetUp failed for volume "kuma-spire-agent-socket" : kubernetes.io/csi: mounter.SetUpAt failed '
        "to get CSI client: driver name csi.spiffe.io not found in the list of registered CSI drivers")


def test_waiting_status_without_init_containers_is_container_creating():
    # kubelet_pods.go convertToAPIContainerStatuses: ContainerCreating unless the pod has init containers
    status = waiting_status(pod([CSI]), "2026-01-01T00:00:00Z", "192.0.2.1")["status"]
    assert status["phase"] == "Pending" and "initContainerStatuses" not in status
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["status"] == "True"
    assert conditions["Ready"]["message"] == "containers with unready status: [app]"  # pkg/kubelet/status/generate.go
    assert conditions["PodScheduled"]["status"] == "True"  # the scheduler's condition is kept


def test_waiting_status_with_init_containers_is_pod_initializing_for_every_container():
    # both convertToAPIContainerStatuses calls get hasInitContainers = len(pod.Spec.InitContainers) > 0
    p = pod([CSI], containers=[{"name": "kuma-sidecar", "image": "kuma-dp"}, {"name": "app", "image": "demo"}],
            inits=[{"name": "kuma-init", "image": "kuma-init"}])
    status = waiting_status(p, "2026-01-01T00:00:00Z", "")["status"]
    assert {s["state"]["waiting"]["reason"] for s in status["containerStatuses"] + status["initContainerStatuses"]} \
        == {"PodInitializing"}
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Initialized"]["reason"], conditions["Initialized"]["message"]) == \
        ("ContainersNotInitialized", "containers with incomplete status: [kuma-init]")
    assert conditions["Ready"]["message"] == "containers with unready status: [kuma-sidecar app]"
    assert "hostIP" not in status


def test_starting_a_pod_removes_what_the_waiting_status_wrote():
    assert started_status(pod([CSI])) == {"status": {"conditions": [{"type": "PodScheduled", "status": "True"}],
                                                     "containerStatuses": None, "initContainerStatuses": None}}


def test_the_csi_driver_registers_its_plugin_name_argument():
    driver = {"spec": {"containers": [{"name": "spiffe-csi-driver",
                                       "args": ["-workload-api-socket-dir", "/s", "-plugin-name", "x.example.org"]}]}}
    assert plugin_name(driver) == "x.example.org"
    assert plugin_name({"spec": {"containers": [{"name": "c"}]}}) == "csi.spiffe.io"
