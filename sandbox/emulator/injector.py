"""Kong Mesh's sidecar injector: what a pod created in an injected namespace looks like after admission.

As in Kuma 2.12.3: the kuma-sidecar container goes first, kuma-init runs as an init container, the pod gets the
`kuma.io/mesh` label and the injected annotations. SPIRE support (the `kuma-spire-agent-socket` CSI volume mounted
read-only in kuma-sidecar, plus KUMA_DATAPLANE_RUNTIME_SPIRE_SUPPORTED=true) is decided at creation time by the
control plane's KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED, or per pod by the *annotation*
`k8s.kuma.io/spire-support` (exact-case true/yes/enabled or false/no/disabled, anything else fails the injection).
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.emulator.kuma import SIDECAR, SPIRE_VOLUME, ControlPlane, enabled, injected, mesh_of

VERSION = "2.12.3"
SPIRE_ANNOTATION = "k8s.kuma.io/spire-support"
INJECTION = "kuma.io/sidecar-injection"


class InjectionError(ValueError):
    """The pod cannot be injected (the message is what the injector's error says)."""


def wants_sidecar(pod: Mapping, namespace: Mapping | None) -> bool:
    """precheck.go needToInject: the pod's `kuma.io/sidecar-injection` label decides, else its namespace's label."""
    try:
        for labels in ((pod.get("metadata") or {}).get("labels"), ((namespace or {}).get("metadata") or {}).get("labels")):
            decided = enabled(labels, INJECTION)
            if decided is not None:
                return decided
    except ValueError as exc:
        raise InjectionError(str(exc)) from exc
    return False


def _env(name: str, value: str) -> dict:
    return {"name": name, "value": value}


def _field_env(name: str, path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _sidecar(mesh: str, cp: ControlPlane, spire: bool) -> dict:
    env = [_field_env("INSTANCE_IP", "status.podIP"),
           _env("KUMA_CONTROL_PLANE_URL", f"https://kong-mesh-control-plane.{cp.namespace}:5678"),
           _env("KUMA_DATAPLANE_DRAIN_TIME", "30s"), _env("KUMA_DATAPLANE_MESH", mesh)]
    if spire:
        env.append(_env("KUMA_DATAPLANE_RUNTIME_SPIRE_SUPPORTED", "true"))
    env += [_env("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH", "/var/run/secrets/kubernetes.io/serviceaccount/token"),
            _env("KUMA_DNS_ENABLED", "true"), _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace")]
    mounts = [{"mountPath": "/tmp", "name": "kuma-sidecar-tmp"}]
    if spire:
        mounts.append({"mountPath": cp.spire_mount_path, "name": SPIRE_VOLUME, "readOnly": True})
    probe = {"httpGet": {"path": "/ready", "port": 9901}, "periodSeconds": 5, "failureThreshold": 12}
    return {"name": SIDECAR, "image": f"docker.io/kong/kuma-dp:{VERSION}", "imagePullPolicy": "IfNotPresent",
            "args": ["run", "--log-level=info", "--concurrency=2"], "env": env, "readinessProbe": probe,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "securityContext": {"runAsUser": 5678, "runAsGroup": 5678, "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": mounts}


def _init_container() -> dict:
    return {"name": "kuma-init", "image": f"docker.io/kong/kuma-init:{VERSION}", "imagePullPolicy": "IfNotPresent",
            "command": ["/usr/bin/kumactl", "install", "transparent-proxy"],
            "args": ["--redirect-inbound-port", "15006", "--redirect-outbound-port", "15001", "--kuma-dp-uid", "5678"],
            "securityContext": {"runAsUser": 0, "runAsGroup": 0,
                                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}},
            "volumeMounts": [{"mountPath": "/tmp", "name": "kuma-init-tmp"}]}


def patch(pod: Mapping, namespace: Mapping | None, cp: ControlPlane) -> list[dict]:
    """JSON patch operations that inject the pod ([] when it is not to be injected)."""
    if injected(pod) or not wants_sidecar(pod, namespace):
        return []
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    annotations = dict(meta.get("annotations") or {})
    try:
        spire = enabled(annotations, SPIRE_ANNOTATION, cp.spire_injection)
    except ValueError as exc:
        raise InjectionError(f"getting {SPIRE_ANNOTATION} annotation failed: {exc}") from exc
    mesh = annotations.get("kuma.io/mesh") or mesh_of(namespace)
    app_containers = list(spec.get("containers", []))
    labels = {**(meta.get("labels") or {}), "kuma.io/mesh": mesh}
    annotations.update({"kuma.io/sidecar-injected": "true", "kuma.io/mesh": mesh, "kuma.io/sidecar-uid": "5678",
                        "kuma.io/envoy-admin-port": "9901", "kuma.io/transparent-proxying": "enabled",
                        "kuma.io/transparent-proxying-inbound-port": "15006",
                        "kuma.io/transparent-proxying-outbound-port": "15001"})
    if app_containers:
        annotations.setdefault("kubectl.kubernetes.io/default-container", app_containers[0].get("name", ""))
    volumes = [*spec.get("volumes", []), {"name": "kuma-init-tmp", "emptyDir": {"sizeLimit": "10M"}},
               {"name": "kuma-sidecar-tmp", "emptyDir": {"sizeLimit": "10M"}}]
    if spire:
        volumes.append({"name": SPIRE_VOLUME, "csi": {"driver": "csi.spiffe.io", "readOnly": True}})
    return [{"op": "add", "path": "/metadata/labels", "value": labels},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
            {"op": "add", "path": "/spec/containers", "value": [_sidecar(mesh, cp, spire), *app_containers]},
            {"op": "add", "path": "/spec/initContainers", "value": [*spec.get("initContainers", []),
                                                                     _init_container()]},
            {"op": "add", "path": "/spec/volumes", "value": volumes}]
