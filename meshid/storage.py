"""SPIRE's datastore claim and the cluster's default StorageClass.

The spire chart's server StatefulSet has a `spire-data` volumeClaimTemplate of 1Gi with no storageClassName
(spiffe/helm-charts-hardened charts/spire/charts/spire-server/templates/statefulset.yaml), so the claim gets the
cluster's default StorageClass when it is created; without one it stays Pending for good and the server pod with it
(the scheduler: "pod has unbound immediate PersistentVolumeClaims").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshid import checks
from meshid.checks import Judgement

if TYPE_CHECKING:
    from meshid.kube import Cluster
    from meshid.spire import SpireRelease

Obj = dict[str, Any]
DEFAULT_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")


def default_class(classes: list[Obj]) -> str | None:
    """The name of the default StorageClass (the newest one, as the DefaultStorageClass admission plugin picks when
    several are marked), or None."""
    marked = [c for c in classes if any((c["metadata"].get("annotations") or {}).get(a) == "true"
                                        for a in DEFAULT_ANNOTATIONS)]
    if not marked:
        return None
    return max(marked, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"]))["metadata"]["name"]


def claim_state(claim: Obj | None) -> str:
    """`<name> Bound (class c)` / `<name> Pending (no class)` / `no claim`, for messages."""
    if claim is None:
        return "no claim"
    spec = claim.get("spec", {})
    cls = spec.get("storageClassName")
    return (f"{claim['metadata']['name']} {claim.get('status', {}).get('phase', 'Pending')} "
            f"({f'class {cls}' if cls else 'no class'})")


def is_bound(claim: Obj | None) -> bool:
    """Whether a claim is Bound to a volume."""
    return claim is not None and claim.get("status", {}).get("phase") == "Bound"


@checks.evaluates(checks.MID023)
def datastore_claimable(cluster: Cluster, spire: SpireRelease, persistence: str) -> Judgement:
    """MID023: whether SPIRE's server can get its datastore volume: no claim needed, its claim is Bound already, or a default
    StorageClass will provision it; and what was seen."""
    if persistence != "pvc":
        return True, f"spire-server.persistence.type={persistence}: no claim needed"
    claim = cluster.get("v1", "PersistentVolumeClaim", spire.data_claim, spire.namespace)
    if is_bound(claim):
        return True, f"claim {claim_state(claim)}"
    classes, _ = cluster.list("storage.k8s.io/v1", "StorageClass")
    default = default_class(classes)
    if default:
        return True, f"default StorageClass {default} provisions {spire.namespace}/{spire.data_claim}"
    names = ", ".join(c["metadata"]["name"] for c in classes) or "none"
    return False, (f"no default StorageClass (classes: {names}): claim {spire.namespace}/{spire.data_claim} "
                   f"({claim_state(claim)}) would stay Pending and pod {spire.server_pod} unschedulable")
