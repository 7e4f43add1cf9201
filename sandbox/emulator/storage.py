"""Storage: the sandbox's default StorageClass and the external provisioner that creates volumes for its claims.

The class is the one kind clusters ship (kubernetes-sigs/kind pkg/build/nodeimage/const_storage.go): `standard`,
default, provisioner `rancher.io/local-path`, reclaimPolicy Delete, volumeBindingMode WaitForFirstConsumer. A node-local
provisioner fits nodes that share no storage, and WaitForFirstConsumer is also what EKS, GKE and AKS default classes
use, so the real scheduler picks the node first (annotation `volume.kubernetes.io/selected-node` on the claim) and the
real PV controller asks the external provisioner (annotation `volume.kubernetes.io/storage-provisioner`).

The emulator plays rancher/local-path-provisioner (provisioner.go provisionFor, through
sig-storage-lib-external-provisioner controller.go): for such a claim it creates PV `pvc-<claim uid>` (hostPath
/var/local-path-provisioner/<pv>_<ns>_<claim>, node affinity kubernetes.io/hostname of the selected node, claimRef,
`pv.kubernetes.io/provisioned-by`), with the events Provisioning and ProvisioningSucceeded; kube-controller-manager's
binder binds it, its protection controllers keep claims in use. A Released volume it provisioned with reclaimPolicy
Delete is deleted. The knob `no_default_storageclass` deletes the class (a new claim then stays Pending, and its pod
unschedulable) and restores it when cleared (the binder then gives pending claims the default class retroactively).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kubernetes.client.exceptions import ApiException

from sandbox.emulator import store as st
from sandbox.emulator.config import ConfigSource
from sandbox.emulator.kubeapi import Writer

log = logging.getLogger("emulator.storage")
STORAGE_CLASSES = st.Kind("storageclasses", "storage.k8s.io")
VOLUMES = st.VOLUMES
CLASS_NAME = "standard"
PROVISIONER = "rancher.io/local-path"
BASE_PATH = "/var/local-path-provisioner"  # kind's local-path-config nodePathMap
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": CLASS_NAME, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}
SELECTED_NODE = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def volume_for(claim: Mapping, node: str) -> dict:
    """The PersistentVolume local-path-provisioner creates for `claim` on `node`."""
    meta, spec = claim["metadata"], claim["spec"]
    name = f"pvc-{meta['uid']}"
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER,
                                                       "local.path.provisioner/selected-node": node}},
            "spec": {"persistentVolumeReclaimPolicy": "Delete", "accessModes": spec.get("accessModes", []),
                     "volumeMode": "Filesystem",
                     "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "")},
                     "hostPath": {"path": f"{BASE_PATH}/{name}_{meta['namespace']}_{meta['name']}",
                                  "type": "DirectoryOrCreate"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                  "name": meta["name"], "uid": meta["uid"],
                                  "resourceVersion": meta.get("resourceVersion", "")},
                     "storageClassName": spec.get("storageClassName") or CLASS_NAME}}


def wants_volume(claim: Mapping) -> bool:
    """True for a pending claim the PV controller handed to this provisioner, on a node the scheduler picked."""
    annotations = claim["metadata"].get("annotations") or {}
    return (not claim["spec"].get("volumeName") and not claim["metadata"].get("deletionTimestamp")
            and annotations.get(STORAGE_PROVISIONER) == PROVISIONER and bool(annotations.get(SELECTED_NODE)))


class Storage:
    """Keeps the default StorageClass as the knob says, provisions claims, deletes released volumes."""

    def __init__(self, writer: Writer, config: ConfigSource) -> None:
        self._writer, self._config = writer, config
        self._class_present: bool | None = None  # as last made so; None: not yet

    def tick(self, now: float) -> None:
        """Create or delete the default StorageClass when `no_default_storageclass` changed."""
        wanted = not self._config.current.no_default_storageclass
        if wanted == self._class_present:
            return
        try:
            if wanted:
                self._writer.create(STORAGE_CLASSES, "", STORAGE_CLASS)
            else:
                self._writer.delete(STORAGE_CLASSES, "", CLASS_NAME)
        except ApiException as exc:
            if exc.status != 409:  # already there: as wanted
                raise
        self._class_present = wanted
        log.info("default StorageClass %s %s", CLASS_NAME, "present" if wanted else "removed")

    def on_claim(self, event: str, claim: Mapping) -> None:
        """Store listener: provision a claim that waits for this provisioner."""
        if event == "DELETED" or not wants_volume(claim):
            return
        meta = claim["metadata"]
        node = meta["annotations"][SELECTED_NODE]
        volume = volume_for(claim, node)
        self._event(claim, "Provisioning",
                    f'External provisioner is provisioning volume for claim "{meta["namespace"]}/{meta["name"]}"')
        try:
            self._writer.create(VOLUMES, "", volume)
        except ApiException as exc:
            if exc.status != 409:  # the same claim seen twice: its volume exists
                raise
            return
        self._event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {volume['metadata']['name']}")
        log.info("provisioned %s for %s/%s on %s", volume["metadata"]["name"], meta["namespace"], meta["name"], node)

    def on_volume(self, event: str, volume: Mapping) -> None:
        """Store listener: delete a Released volume this provisioner made when its policy is Delete."""
        meta, spec = volume["metadata"], volume.get("spec") or {}
        if event != "DELETED" and (volume.get("status") or {}).get("phase") == "Released" and \
                (meta.get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER and \
                spec.get("persistentVolumeReclaimPolicy") == "Delete" and not meta.get("deletionTimestamp"):
            self._writer.delete(VOLUMES, "", meta["name"])
            log.info("deleted released volume %s", meta["name"])

    def _event(self, claim: Mapping, reason: str, message: str) -> None:
        self._writer.record_event({"kind": "PersistentVolumeClaim", **claim}, reason, message,
                                  f"{PROVISIONER}_local-path-provisioner")
