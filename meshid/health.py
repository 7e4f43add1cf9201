"""`meshid check`: read-only health checks of Kong Mesh + SPIRE identity on an existing cluster.

Each check is a catalogue code with a severity and a hint, like `linkerd check`. Nothing is changed, except that the
behaviour check reads the demo's counter (`GET /api/counter`) through a port-forward, as the guide's curl does, and
kv's sidecar stats through its admin port, and the registration check runs `spire-server entry show` in SPIRE's
server pod, as an operator would with `kubectl exec`.
"""

from __future__ import annotations

from collections.abc import Callable

from meshid import checks
from meshid.conditions import live
from meshid.envoy_admin import inbound_handshakes, served_ids
from meshid.errors import ExternalCallError
from meshid.kube import Cluster
from meshid.manifests import DEMO_PORT, DEMO_WORKLOADS, MESH, traffic_permission
from meshid.models import GuideParams
from meshid.probes import counter_probe, serving_pod
from meshid.results import CheckResult
from meshid.stages import apply_mesh_identity, cluster_start, connectivity  # noqa: F401 - MID012/040/041, MID002, MID060-065
from meshid.stages.enable_injection import CONTROL_PLANE
from meshid.stages.install_kong_mesh import CONTROL_PLANE_SELECTOR
from meshid.stages.install_spire import node_components
from meshid.stages.restart_workloads import IDENTITY_SERVICE

KUMA = "kuma.io/v1alpha1"
Check = Callable[[Cluster, GuideParams], list[CheckResult]]


def _control_plane(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    ns = p.namespaces.control_plane
    pods, _ = cluster.list("v1", "Pod", ns, label_selector=CONTROL_PLANE_SELECTOR)
    return [checks.MID010.result(pods, ns),
            checks.MID022.result(cluster.get("apps/v1", "Deployment", CONTROL_PLANE, ns) or {}, ns),
            checks.MID012.result(cluster.get(KUMA, "Mesh", MESH) or {})]


def _spire(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    spire = p.spire
    server = cluster.get("v1", "Pod", spire.server_pod, spire.namespace)
    results = [checks.MID020.result([server] if server else [], spire, p.resolved_spire_trust_domain),
               checks.MID023.result(cluster, spire, p.spire_persistence)]
    results += node_components(cluster, spire)
    crs, _ = cluster.list("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID")
    results += [checks.MID030.result(crs, p), checks.MID031.result(crs, p)]
    try:
        return results + [checks.MID032.result(cluster, p, p.timeouts.http_s)]
    except ExternalCallError as exc:
        return results + [checks.MID032.failed(str(exc))]


def _identity(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    ns = p.namespaces.control_plane
    identities, _ = cluster.list(KUMA, "MeshIdentity", ns)
    identities = live(identities)  # one being deleted no longer counts
    if not identities:
        return [checks.MID040.result(None, ns)]
    results = []
    for obj in identities:
        results += [checks.MID041.result(obj), checks.MID040.result(obj, ns)]
    pods, _ = cluster.list("v1", "Pod", p.namespaces.demo, label_selector=f"app in ({','.join(DEMO_WORKLOADS)})")
    results.append(checks.MID050.result(pods))
    services, _ = cluster.list(KUMA, "MeshService", p.namespaces.demo)
    return results + [checks.MID051.result(services, IDENTITY_SERVICE, p.workload_id())]


def _behaviour(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    mtp = traffic_permission(p)["metadata"]
    permitted = cluster.get(KUMA, "MeshTrafficPermission", mtp["name"], mtp["namespace"]) is not None
    with counter_probe(cluster, p.namespaces.demo, timeout_s=p.timeouts.http_s) as probe:
        answer = probe.call("GET")
    if not permitted:
        return [checks.MID060.result(answer, f"without MeshTrafficPermission {mtp['name']}: GET /api/counter")]
    kv = serving_pod(cluster, p.namespaces.demo, IDENTITY_SERVICE)
    return [checks.MID061.result(answer, f"with MeshTrafficPermission {mtp['name']}: GET /api/counter", counted=False),
            checks.MID063.result(kv, inbound_handshakes(cluster, p.namespaces.demo, kv, DEMO_PORT, p.timeouts.http_s)),
            checks.MID065.result(kv, served_ids(cluster, p.namespaces.demo, kv, p.timeouts.http_s), p.workload_id())]


SUITE: tuple[tuple[str, Check], ...] = (
    ("kong mesh control plane", _control_plane),
    ("spire", _spire),
    ("identity", _identity),
    ("behaviour", _behaviour),
)


def run_checks(cluster: Cluster, params: GuideParams) -> list[tuple[str, list[CheckResult]]]:
    """Every group of checks; a group the cluster cannot answer becomes one failed check saying why."""
    out = []
    for group, check in SUITE:
        try:
            out.append((group, check(cluster, params)))
        except ExternalCallError as exc:
            out.append((group, [checks.MID002.result(group, exc)]))
    return out
