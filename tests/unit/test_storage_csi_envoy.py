"""Pure readings of API objects and sidecar stats: default StorageClass, pods held by the CSI driver, TLS handshakes,
and the exec stream's final status."""

from __future__ import annotations

from meshid.csi import NOT_REGISTERED, held
from meshid.envoy_admin import handshakes, parse_stats
from meshid.podexec import exit_status
from meshid.storage import claim_state, default_class


def _class(name: str, default: str | None, created: str = "2026-01-01T00:00:00Z") -> dict:
    annotations = {"storageclass.kubernetes.io/is-default-class": default} if default else {}
    return {"metadata": {"name": name, "annotations": annotations, "creationTimestamp": created}}


def test_the_default_storage_class_is_the_annotated_one_and_the_newest_of_several():
    assert default_class([_class("slow", None), _class("standard", "true")]) == "standard"
    assert default_class([_class("standard", "false")]) is None
    assert default_class([_class("a", "true", "2026-01-01T00:00:00Z"), _class("b", "true", "2026-02-01T00:00:00Z")]) == "b"
    assert claim_state(None) == "no claim"
    assert claim_state({"metadata": {"name": "c"}, "spec": {}, "status": {"phase": "Pending"}}) == "c Pending (no class)"


def _pod(name: str, csi: bool, ready: bool) -> dict:
    volumes = [{"name": "kuma-spire-agent-socket", "csi": {"driver": "csi.spiffe.io", "readOnly": True}}] if csi else []
    return {"metadata": {"name": name}, "spec": {"volumes": volumes},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def _event(pod: str, message: str) -> dict:
    return {"involvedObject": {"kind": "Pod", "name": pod}, "reason": "FailedMount", "message": message,
            "lastTimestamp": "2026-01-01T00:00:00Z"}


def test_pods_are_held_by_the_csi_driver_only_with_the_kubelets_event_and_while_not_ready():
    # the kubelet's text: kubernetes pkg/volume/csi/csi_client.go ("driver name %s not found in the list of
    # registered CSI drivers"), wrapped by csi_mounter.go and the volume manager's "MountVolume.SetUp failed ..."
    message = ('MountVolume.SetUp failed for volume "kuma-spire-agent-socket" : kubernetes.io/csi: mounter.SetUpAt '
               f"failed to get CSI client: {NOT_REGISTERED}")
    pods = [_pod("held", True, False), _pod("ready", True, True), _pod("plain", False, False),
            _pod("other-error", True, False)]
    events = [_event("held", message), _event("ready", message), _event("plain", message),
              _event("other-error", "MountVolume.SetUp failed: permission denied")]
    assert held(pods, events) == {"held": message}


def test_handshakes_sum_the_inbound_listeners_on_the_port():
    # Envoy's /stats?format=json shape; listener stats are named after the listener address (listener.<ip>_<port>.)
    stats = parse_stats({"stats": [{"name": "listener.10.244.0.7_5050.ssl.handshake", "value": 3},
                                   {"name": "listener.10.244.0.7_5050.ssl.connection_error", "value": 1},
                                   {"name": "listener.10.244.0.7_9901.ssl.handshake", "value": 9},
                                   {"histograms": {"computed_quantiles": []}}]})
    assert handshakes(stats, 5050) == 3
    assert handshakes({"listener.10.244.0.7_5050.downstream_cx_total": 4}, 5050) is None, "plaintext: no ssl stats"


def test_exec_exit_status_comes_from_the_final_status_frame():
    # kubernetes remotecommand: a non-zero exit is Status Failure, reason NonZeroExitCode, cause ExitCode
    assert exit_status({"metadata": {}, "status": "Success"}) == (0, "")
    failure = {"status": "Failure", "message": "command terminated with non-zero exit code: exit status 2",
               "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}}
    assert exit_status(failure) == (2, failure["message"])
    assert exit_status({"status": "Failure", "message": "container not found"})[0] == 1
