"""The guide's objects as plain dicts rendered from `GuideParams`, field for field, and meshid's stamp on them."""

from __future__ import annotations

import copy
from typing import Any

from meshid.models import GuideParams, RegistrationClass
from meshid.spiffe import SPIRE_ID_TEMPLATE

Manifest = dict[str, Any]

MESH = "default"
MESH_LABEL = "kuma.io/mesh"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshid"
RUN_ID_ANNOTATION = "meshid.io/run-id"
DEMO_IMAGE = (
    "ghcr.io/kumahq/kuma-counter-demo:latest@sha256:daf8f5cffa10b576ff845be84e4e3bd5a8a6470c7e66293c5e03a148f08ac148"
)
OTEL_ENDPOINT = "http://opentelemetry-collector.mesh-observability:4317"
DEMO_PORT = 5050
CLUSTER_SPIFFE_ID = "spire-registration"  # the guide's ClusterSPIFFEID
DEMO_WORKLOADS = ("demo-app", "kv")  # the demo Deployments with replicas (demo-app-v2 has none)
PROBE = "meshid-probe"  # the negative probe's Deployment and app label
SPIRE_INJECTION_ENV = "KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED"


def _service(name: str, ns: str, selector: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "ports": [{"appProtocol": "http", "port": DEMO_PORT, "protocol": "TCP", "targetPort": DEMO_PORT}],
            "selector": selector,
        },
    }


def _env(service: str, kv_url: str | None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "OTEL_SERVICE_NAME", "value": service},
        {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": OTEL_ENDPOINT},
    ]
    if kv_url:
        env.append({"name": "KV_URL", "value": kv_url})
    env.append({"name": "APP_VERSION", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['version']"}}})
    return env


def _deployment(
    name: str, ns: str, pod_labels: dict[str, str], replicas: int, container: str, env: list[dict[str, Any]],
    *, labelled: bool = True, extra_labels: dict[str, str] | None = None,
) -> Manifest:
    metadata: dict[str, Any] = {"labels": dict(pod_labels)} if labelled else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**metadata, "name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(pod_labels)},
            "template": {
                "metadata": {"labels": {**pod_labels, **(extra_labels or {})}},
                "spec": {
                    "containers": [
                        {
                            "env": env,
                            "image": DEMO_IMAGE,
                            "name": container,
                            "ports": [{"containerPort": DEMO_PORT, "name": "http"}],
                        }
                    ]
                },
            },
        },
    }


def demo_objects(params: GuideParams) -> list[Manifest]:
    """Step 2 of the guide: demo namespace, Services, Deployments, Mesh `default` and the legacy MTP `kv`."""
    ns = params.namespaces.demo
    kv_url = f"http://kv.{ns}.svc.cluster.local:{DEMO_PORT}"
    v1, v2 = {"app": "demo-app", "version": "v1"}, {"app": "demo-app", "version": "v2"}
    selected = params.identity_selector  # the demo's pods opt in to the rollout's MeshIdentity
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"labels": {"kuma.io/sidecar-injection": "enabled"}, "name": ns},
        },
        _service("demo-app", ns, {"app": "demo-app"}),
        _service("demo-app-v1", ns, dict(v1)),
        _service("demo-app-v2", ns, dict(v2)),
        _service("kv", ns, {"app": "kv"}),
        _deployment("demo-app", ns, v1, 1, "app", _env("demo-app", kv_url), extra_labels=selected),
        _deployment("demo-app-v2", ns, v2, 0, "demo-app", _env("demo-app", kv_url), extra_labels=selected),
        _deployment("kv", ns, {"app": "kv"}, 1, "app", _env("kv", None), labelled=False, extra_labels=selected),
        demo_mesh(params),
        {
            "apiVersion": "kuma.io/v1alpha1",
            "kind": "MeshTrafficPermission",
            "metadata": {"name": "kv", "namespace": ns},
            "spec": {
                "from": [
                    {
                        "default": {"action": "Allow"},
                        "targetRef": {
                            "kind": "MeshSubset",
                            "tags": {"app": "demo-app", "k8s.kuma.io/namespace": ns},
                        },
                    }
                ],
                "targetRef": {"kind": "Dataplane", "labels": {"app": "kv"}},
            },
        },
    ]


def demo_mesh(params: GuideParams) -> Manifest:
    """The guide's Mesh `default`: MeshServices Exclusive (what a MeshIdentity needs) and the builtin mTLS backend."""
    return {
        "apiVersion": "kuma.io/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": MESH},
        "spec": {
            "meshServices": {"mode": params.mesh_services_mode},
            "mtls": {"backends": [{"name": "ca-1", "type": "builtin"}], "enabledBackend": "ca-1"},
        },
    }


def probe_objects(params: GuideParams) -> list[Manifest]:
    """The negative probe: the counter demo as a client of kv, in its own injected namespace, so its SPIFFE ID
    (`.../ns/<probe ns>/sa/default`) is one the permission does not admit; it carries the identity selector's labels
    so that it gets a SPIRE identity like the demo."""
    ns, demo = params.namespaces.probe, params.namespaces.demo
    labels = {"app": PROBE}
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"labels": {"kuma.io/sidecar-injection": "enabled"}, "name": ns}},
        _deployment(PROBE, ns, labels, 1, "app", _env(PROBE, f"http://kv.{demo}.svc.cluster.local:{DEMO_PORT}"),
                    extra_labels=params.identity_selector),
    ]


def cluster_spiffe_id(params: GuideParams) -> Manifest:
    """The guide's ClusterSPIFFEID `spire-registration`; className only with `RegistrationClass.CHART_CLASS`."""
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {MESH_LABEL: MESH}},
        "spiffeIDTemplate": SPIRE_ID_TEMPLATE,
        "workloadSelectorTemplates": [f"k8s:ns:{params.namespaces.demo}"],
    }
    if params.registration is RegistrationClass.CHART_CLASS:
        spec["className"] = params.spire.controller_class
    return {
        "apiVersion": "spire.spiffe.io/v1alpha1",
        "kind": "ClusterSPIFFEID",
        "metadata": {"name": CLUSTER_SPIFFE_ID},
        "spec": spec,
    }


def mesh_identity(params: GuideParams) -> Manifest:
    """The guide's MeshIdentity `identity-spire` (only valid in the control-plane namespace)."""
    return {
        "apiVersion": "kuma.io/v1alpha1",
        "kind": "MeshIdentity",
        "metadata": {
            "name": "identity-spire",
            "namespace": params.namespaces.control_plane,
            "labels": {MESH_LABEL: MESH, "kuma.io/origin": "zone"},
        },
        "spec": {
            "selector": {"dataplane": {"matchLabels": dict(params.identity_selector)}},
            "spiffeID": {"trustDomain": params.trust_domain, "path": params.identity_path},
            "provider": {"type": "Spire", "spire": {}},
        },
    }


def traffic_permission(params: GuideParams) -> Manifest:
    """The guide's MeshTrafficPermission `mtp`: allow the demo namespace's SPIFFE IDs."""
    ns, permission = params.namespaces.demo, params.permission
    return {
        "apiVersion": "kuma.io/v1alpha1",
        "kind": "MeshTrafficPermission",
        "metadata": {"name": "mtp", "namespace": ns, "labels": {MESH_LABEL: MESH}},
        "spec": {
            "rules": [
                {
                    "default": {
                        "allow": [
                            {
                                "spiffeID": {
                                    "type": permission.type,
                                    "value": permission.resolved_value(params.trust_domain, ns),
                                }
                            }
                        ]
                    }
                }
            ]
        },
    }


def spire_values(params: GuideParams) -> list[str]:
    """`key=value` pairs for `helm --set` on the spire chart (the chart's own persistence default is pvc)."""
    values = [
        f"global.spire.trustDomain={params.resolved_spire_trust_domain}",
        f"global.spire.tools.kubectl.tag={params.charts.kubectl_hook_tag}",
    ]
    if params.spire_persistence != "pvc":
        values.append(f"spire-server.persistence.type={params.spire_persistence}")
    return values


def injection_env_values(params: GuideParams) -> list[str]:
    """`key=value` pairs for `helm --set` on kong-mesh enabling SPIRE injection (same for every `params`).

    A chart value rather than the guide's `kubectl set env`, which the next `helm upgrade` would drop.
    """
    return [f"kuma.controlPlane.envVars.{SPIRE_INJECTION_ENV}=true"]


def stamp(obj: Manifest, run_id: str) -> Manifest:
    """A copy of `obj` labelled managed-by meshid and annotated with the run id, so cleanup finds exactly it."""
    stamped = copy.deepcopy(obj)
    metadata = stamped.setdefault("metadata", {})
    metadata.setdefault("labels", {})[MANAGED_BY_LABEL] = MANAGED_BY
    metadata.setdefault("annotations", {})[RUN_ID_ANNOTATION] = run_id
    return stamped
