"""Kong Mesh's view of the pods of a cluster: which are data planes, their labels and tags, and the SPIFFE IDs their
certificates carry before and after a MeshIdentity switch (pure functions over API objects).

From kumahq/kuma 2.12.3:
- a pod is a data plane when the injector added the `kuma-sidecar` container; the Dataplane's labels are the pod's
  plus computed ones such as `k8s.kuma.io/namespace` and `kuma.io/mesh` (pkg/plugins/runtime/k8s/controllers/
  pod_converter.go, model.ComputeLabels), and a MeshIdentity's `selector.dataplane.matchLabels` matches those labels;
- each inbound's tags are the pod's labels plus `k8s.kuma.io/namespace` and `kuma.io/service` =
  `<service>_<namespace>_svc_<port>` for each Service port selecting the pod (inbound_converter.go, util.ServiceTag);
- a legacy (mesh CA) certificate carries `spiffe://<mesh>/<kuma.io/service>` for each of its services
  (pkg/xds/envoy/tls/tls.go, ServiceSpiffeID); a MeshIdentity certificate carries the identity's rendered SPIFFE ID.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshid.conditions import live

Obj = dict[str, Any]
SIDECAR = "kuma-sidecar"
SPIRE_SOCKET_VOLUME = "kuma-spire-agent-socket"
NAMESPACE_TAG = "k8s.kuma.io/namespace"
SERVICE_TAG = "kuma.io/service"
MESH_LABEL = "kuma.io/mesh"


@dataclass(frozen=True)
class Dataplane:
    """One injected pod as the control plane sees it."""

    namespace: str
    pod: str
    workload: str  # the owning Deployment (from the ReplicaSet's name), StatefulSet, DaemonSet or the pod itself
    mesh: str
    service_account: str
    labels: Mapping[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = ()  # kuma.io/service tag values
    spire_socket: bool = False

    @property
    def tags(self) -> dict[str, set[str]]:
        """The inbound tags, each with every value the data plane's inbounds carry."""
        tags = {k: {v} for k, v in self.labels.items()}
        tags[SERVICE_TAG] = set(self.services)
        return tags

    def legacy_ids(self) -> list[str]:
        """The SPIFFE IDs of its mesh CA certificate, one per service."""
        return [f"spiffe://{self.mesh}/{service}" for service in self.services]


def _workload(pod: Obj) -> str:
    owner = next(iter(pod["metadata"].get("ownerReferences") or []), None)
    if owner is None:
        return pod["metadata"]["name"]
    if owner.get("kind") == "ReplicaSet":
        return owner["name"].rsplit("-", 1)[0]  # <deployment>-<pod-template-hash>
    return owner["name"]


def _selects(service: Obj, pod: Obj) -> bool:
    selector = service.get("spec", {}).get("selector") or {}
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def dataplanes(pods: list[Obj], services: list[Obj]) -> list[Dataplane]:
    """The data planes among `pods` (live, injected), with the services that select them."""
    found = []
    for pod in live(pods):
        spec, meta = pod.get("spec", {}), pod["metadata"]
        if not any(c.get("name") == SIDECAR for c in spec.get("containers") or []):
            continue
        ns = meta["namespace"]
        mesh = (meta.get("labels") or {}).get(MESH_LABEL) or (meta.get("annotations") or {}).get(MESH_LABEL) or "default"
        labels = {**(meta.get("labels") or {}), NAMESPACE_TAG: ns, MESH_LABEL: mesh}
        tags = sorted(f"{s['metadata']['name']}_{ns}_svc_{port['port']}" for s in services
                      if s["metadata"]["namespace"] == ns and _selects(s, pod)
                      for port in s.get("spec", {}).get("ports") or [])
        found.append(Dataplane(ns, meta["name"], _workload(pod), mesh, spec.get("serviceAccountName") or "default",
                               labels, tuple(tags),
                               any(v.get("name") == SPIRE_SOCKET_VOLUME for v in spec.get("volumes") or [])))
    return found


def matches_labels(match_labels: Mapping[str, str], dp: Dataplane) -> bool:
    """Whether a `matchLabels` selector (a MeshIdentity's `selector.dataplane`) selects the data plane."""
    return all(dp.labels.get(k) == v for k, v in match_labels.items())


def _tags_match(wanted: Mapping[str, str], dp: Dataplane) -> bool:
    tags = dp.tags
    return all(v in tags.get(k, set()) for k, v in wanted.items())


def ref_selects(ref: Mapping[str, Any] | None, dp: Dataplane) -> bool:
    """Whether a policy targetRef (top level, or a `from` entry's) selects the data plane: Mesh selects all,
    MeshSubset by tags, MeshService by service name (and tags), Dataplane by labels (and name)."""
    ref = ref or {"kind": "Mesh"}
    kind = ref.get("kind")
    if kind == "Mesh":
        return True
    if kind == "MeshSubset":
        return _tags_match(ref.get("tags") or {}, dp)
    if kind in ("MeshService", "MeshServiceSubset"):
        names = {s.split("_", 1)[0] for s in dp.services} | set(dp.services)
        return ref.get("name") in names and _tags_match(ref.get("tags") or {}, dp)
    if kind == "Dataplane":
        return all(dp.labels.get(k) == v for k, v in (ref.get("labels") or {}).items()) and (
            not ref.get("name") or ref["name"] == dp.pod)
    return False


def policy_applies(policy: Obj, dp: Dataplane, system_namespace: str) -> bool:
    """Whether a namespaced policy applies to the data plane: same mesh, and the system namespace's policies reach
    every namespace while an application namespace's reach only their own; then its top-level targetRef."""
    meta = policy["metadata"]
    if (meta.get("labels") or {}).get(MESH_LABEL, "default") != dp.mesh:
        return False
    if meta.get("namespace") not in (system_namespace, dp.namespace):
        return False
    return ref_selects(policy.get("spec", {}).get("targetRef"), dp)
