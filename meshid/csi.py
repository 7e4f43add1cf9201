"""Pods held by the SPIFFE CSI driver: the kubelet cannot mount an inline `csi.spiffe.io` volume until the driver's node
plugin has registered on that node, and until then it reports each failed try as a FailedMount event.

The event's text is the kubelet's: `MountVolume.SetUp failed for volume "<volume>" : kubernetes.io/csi:
mounter.SetUpAt failed to get CSI client: driver name csi.spiffe.io not found in the list of registered CSI drivers`
(kubernetes pkg/kubelet/volumemanager/reconciler, pkg/volume/csi/csi_mounter.go and csi_client.go).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshid.conditions import is_true, live, named, daemonset_ready
from meshid.spire import CSI_DRIVER

if TYPE_CHECKING:
    from meshid.kube import Cluster
    from meshid.spire import SpireRelease

Obj = dict[str, Any]
NOT_REGISTERED = f"driver name {CSI_DRIVER} not found in the list of registered CSI drivers"


def uses_driver(pod: Obj) -> bool:
    """Whether the pod has an inline volume of the SPIFFE CSI driver."""
    return any((v.get("csi") or {}).get("driver") == CSI_DRIVER for v in pod.get("spec", {}).get("volumes") or [])


def held(pods: list[Obj], events: list[Obj]) -> dict[str, str]:
    """Pod name -> the kubelet's last FailedMount message, for the live, not ready pods with a CSI volume whose mount
    the kubelet reported failing because the driver is not registered on their node."""
    failed = {}
    for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
        ref = event.get("involvedObject") or {}
        if ref.get("kind") == "Pod" and event.get("reason") == "FailedMount" and \
                NOT_REGISTERED in (event.get("message") or ""):
            failed[ref.get("name", "")] = event["message"]
    return {p["metadata"]["name"]: failed[p["metadata"]["name"]] for p in live(pods)
            if p["metadata"]["name"] in failed and uses_driver(p) and not is_true(p, "Ready")}


def explain(cluster: Cluster, namespace: str, spire: SpireRelease) -> str | None:
    """Why pods of `namespace` wait for the SPIFFE CSI driver (the pods, their nodes, the kubelet's words and the
    driver DaemonSet's state), or None when none does."""
    pods, _ = cluster.list("v1", "Pod", namespace)
    events, _ = cluster.list("v1", "Event", namespace, field_selector="reason=FailedMount")
    waiting = held(pods, events)
    if not waiting:
        return None
    nodes = {p["metadata"]["name"]: p.get("spec", {}).get("nodeName", "?") for p in pods}
    daemonsets, _ = cluster.list("apps/v1", "DaemonSet", spire.namespace, field_selector=f"metadata.name={spire.csi_driver}")
    _, driver = named(spire.csi_driver, daemonset_ready)(daemonsets)
    listed = ", ".join(f"{name} (node {nodes.get(name, '?')})" for name in sorted(waiting))
    return (f"{len(waiting)} pod(s) wait for the SPIFFE CSI driver {CSI_DRIVER}: {listed}; kubelet: "
            f"{next(iter(waiting.values()))}; DaemonSet {spire.namespace}/{spire.csi_driver}: {driver}")
