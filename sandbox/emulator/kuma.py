"""What Kong Mesh's control plane knows: where it runs, its env, meshes, data plane labels, MeshIdentity rendering."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sandbox.emulator import store as st
from sandbox.emulator.templates import TemplateError, render

CONTROL_PLANE_APP = "kong-mesh-control-plane"
ZONE = "default"
SPIRE_ENV = "KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED"
SPIRE_MOUNT_ENV = "KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_MOUNT_PATH"
SPIRE_VOLUME = "kuma-spire-agent-socket"
SIDECAR = "kuma-sidecar"
DEFAULT_TRUST_DOMAIN = "{{ .Mesh }}.{{ .Zone }}.mesh.local"
DEFAULT_PATH = "/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}"
# How often the control plane regenerates each proxy's configuration, so how soon a policy change is in force
# (kuma-cp.defaults.yaml: xdsServer.dataplaneConfigurationRefreshInterval: 1s); status writes have their own tick.
XDS_REFRESH_S = 1.0


def pod_ready(pod: Mapping) -> bool:
    """True when the pod is not terminating and its Ready condition is True."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


@dataclass(frozen=True)
class ControlPlane:
    """The running control plane: its namespace, whether it serves, and its env as of its newest ready pod."""

    namespace: str
    ready: bool
    env: Mapping[str, str]

    @property
    def spire_injection(self) -> bool:
        """KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED as the control plane's env config parses it (Go's
        strconv.ParseBool)."""
        return self.env.get(SPIRE_ENV, "false") in ("1", "t", "T", "TRUE", "true", "True")

    @property
    def spire_mount_path(self) -> str:
        """Where the SPIRE agent socket volume is mounted in the sidecar."""
        return self.env.get(SPIRE_MOUNT_ENV, "/run/spire/sockets")


def control_plane_pods(store: st.Store, namespace: str | None = None) -> list[dict]:
    """Pods labelled app=kong-mesh-control-plane (the guide's selector)."""
    return [p for p in store.list(st.PODS, namespace)
            if p["metadata"].get("labels", {}).get("app") == CONTROL_PLANE_APP]


def control_plane(store: st.Store, namespace: str | None = None) -> ControlPlane | None:
    """The control plane (in `namespace` when given), or None when none is installed."""
    pods = control_plane_pods(store, namespace)
    if not pods:
        return None
    ready = [p for p in pods if pod_ready(p)]
    newest = max(ready or pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))
    env = {}
    for container in newest["spec"].get("containers", [])[:1]:
        env = {e["name"]: e.get("value", "") for e in container.get("env", []) if "name" in e}
    return ControlPlane(namespace=newest["metadata"]["namespace"], ready=bool(ready), env=env)


def enabled(values: Mapping[str, str] | None, key: str, default: bool | None = None) -> bool | None:
    """An enabled/disabled label or annotation as Kuma 2.12.3 reads it (k8s/metadata/annotations.go
    GetEnabledWithDefault): exact-case true/yes/enabled or false/no/disabled; `default` when absent; any other value
    raises ValueError with Kuma's message."""
    value = (values or {}).get(key)
    if value is None:
        return default
    if value in ("true", "yes", "enabled"):
        return True
    if value in ("false", "no", "disabled"):
        return False
    raise ValueError(f'annotation "{key}" has wrong value "{value}"')


def mesh_of(namespace: Mapping | None, obj_labels: Mapping[str, str] | None = None) -> str:
    """The mesh of an object: its kuma.io/mesh label, else its namespace's annotation, else `default`."""
    if obj_labels and obj_labels.get("kuma.io/mesh"):
        return obj_labels["kuma.io/mesh"]
    annotations = (namespace or {}).get("metadata", {}).get("annotations", {}) or {}
    return annotations.get("kuma.io/mesh", "default")


def mesh_services_mode(mesh: Mapping | None) -> str:
    """`spec.meshServices.mode` of a Mesh (Disabled when unset)."""
    return ((mesh or {}).get("spec") or {}).get("meshServices", {}).get("mode", "Disabled")


def mesh_mtls_enabled(mesh: Mapping | None) -> bool:
    """True when the Mesh has an enabled mTLS backend."""
    return bool(((mesh or {}).get("spec") or {}).get("mtls", {}).get("enabledBackend"))


def injected(pod: Mapping) -> bool:
    """True for pods the injector gave a kuma-sidecar."""
    return any(c.get("name") == SIDECAR for c in pod.get("spec", {}).get("containers", []))


def has_spire_socket(pod: Mapping) -> bool:
    """True when the pod carries the kuma-spire-agent-socket CSI volume (injected with SPIRE support)."""
    return any(v.get("name") == SPIRE_VOLUME and "csi" in v for v in pod.get("spec", {}).get("volumes", []))


def service_account(pod: Mapping) -> str:
    """The pod's service account (`default` when unset)."""
    return pod.get("spec", {}).get("serviceAccountName") or "default"


def dataplane_labels(pod: Mapping) -> dict[str, str]:
    """Labels of the pod's Dataplane: the pod's plus what the control plane adds."""
    meta = pod["metadata"]
    labels = dict(meta.get("labels", {}))
    labels.update({"k8s.kuma.io/namespace": meta["namespace"], "kuma.io/serviceaccount": service_account(pod),
                   "kuma.io/zone": ZONE, "kuma.io/env": "kubernetes"})
    return labels


def selects_pod(service: Mapping, pod: Mapping) -> bool:
    """True when the Service's selector selects the pod (same namespace)."""
    selector = service.get("spec", {}).get("selector") or {}
    labels = pod["metadata"].get("labels", {})
    return (bool(selector) and service["metadata"]["namespace"] == pod["metadata"]["namespace"]
            and all(labels.get(k) == v for k, v in selector.items()))


def service_tags(services: list[Mapping]) -> set[str]:
    """kuma.io/service tag values of a pod selected by `services`: `<name>_<namespace>_svc_<port>`."""
    return {f"{s['metadata']['name']}_{s['metadata']['namespace']}_svc_{p['port']}"
            for s in services for p in s.get("spec", {}).get("ports", [])}


def matching_identity(mids: list[Mapping], mesh: str, labels: Mapping[str, str]) -> Mapping | None:
    """The MeshIdentity of `mesh` selecting a data plane with `labels`: most matchLabels wins, then name."""
    candidates = []
    for mid in mids:
        if mid["metadata"].get("labels", {}).get("kuma.io/mesh", "default") != mesh:
            continue
        dataplane = ((mid.get("spec") or {}).get("selector") or {}).get("dataplane")
        if dataplane is None:
            continue  # a missing selector selects nothing
        wanted = dataplane.get("matchLabels") or {}
        if all(labels.get(k) == v for k, v in wanted.items()):
            candidates.append((-len(wanted), mid["metadata"]["name"], mid))
    return min(candidates, key=lambda c: (c[0], c[1]))[2] if candidates else None


def identity_trust_domain(mid: Mapping, mesh: str) -> str:
    """The MeshIdentity's trust domain (template vars .Mesh, .Zone); raises TemplateError."""
    labels = mid["metadata"].get("labels", {})
    template = ((mid.get("spec") or {}).get("spiffeID") or {}).get("trustDomain") or DEFAULT_TRUST_DOMAIN
    return render(template, {"Mesh": mesh, "Zone": labels.get("kuma.io/zone", ZONE)}, {"label": _label_of(labels)})


def rendered_spiffe_id(mid: Mapping, mesh: str, dp_labels: Mapping[str, str]) -> str:
    """The SPIFFE ID Kuma renders for a data plane: spiffe://<trust domain><path>; raises TemplateError."""
    path = ((mid.get("spec") or {}).get("spiffeID") or {}).get("path") or DEFAULT_PATH
    data = {"TrustDomain": identity_trust_domain(mid, mesh), "Namespace": dp_labels.get("k8s.kuma.io/namespace", ""),
            "ServiceAccount": dp_labels.get("kuma.io/serviceaccount", "")}
    return render("spiffe://{{ .TrustDomain }}" + path, data, {"label": _label_of(dp_labels)})


def _label_of(labels: Mapping[str, str]):
    def label(key: str) -> str:
        if key not in labels:
            raise TemplateError(f"label {key} not found")
        return labels[key]
    return label


def computed_labels(kind: str, meta: Mapping, system_namespace: str) -> dict[str, str]:
    """Labels Kuma's defaulting webhook gives a namespaced resource of `kind`."""
    labels = dict(meta.get("labels") or {})
    labels.setdefault("kuma.io/mesh", "default")
    labels.setdefault("kuma.io/origin", "zone")
    labels.setdefault("kuma.io/display-name", meta.get("name", ""))
    labels.update({"kuma.io/env": "kubernetes", "kuma.io/zone": ZONE, "k8s.kuma.io/namespace": meta["namespace"]})
    if kind == "MeshTrafficPermission":
        labels["kuma.io/policy-role"] = "system" if meta["namespace"] == system_namespace else "workload-owner"
    return labels
