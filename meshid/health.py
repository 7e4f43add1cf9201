"""`meshid check`: read-only health checks of Kong Mesh + SPIRE identity on an existing cluster.

Each check is a catalogue code with a severity and a hint, like `linkerd check`. Nothing is changed, except that the
behaviour check reads the demo's counter (`GET /api/counter`) through a port-forward, as the guide's curl does, and
kv's sidecar stats through its admin port, and the registration check runs `spire-server entry show` in SPIRE's
server pod, as an operator would with `kubectl exec`.
"""

from __future__ import annotations

from collections.abc import Callable

from meshid import checks, identity, registration
from meshid.conditions import conditions_text, is_true, live, pods_ready
from meshid.envoy_admin import inbound_handshakes, served_ids
from meshid.errors import ExternalCallError
from meshid.kube import Cluster
from meshid.manifests import DEMO_PORT, DEMO_WORKLOADS, MESH, SPIRE_INJECTION_ENV, traffic_permission
from meshid.models import GuideParams
from meshid.probes import body_json, counter_probe, denied, serving_pod
from meshid.results import CheckResult
from meshid.stages.apply_mesh_identity import mesh_services_exclusive
from meshid.stages.enable_injection import CONTROL_PLANE, injection_env
from meshid.stages.install_kong_mesh import CONTROL_PLANE_SELECTOR
from meshid.stages.install_spire import node_components
from meshid.stages.restart_workloads import IDENTITY_SERVICE, socket_volumes
from meshid.storage import datastore_claimable

KUMA = "kuma.io/v1alpha1"
Check = Callable[[Cluster, GuideParams], list[CheckResult]]


def _control_plane(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    ns = p.namespaces.control_plane
    pods, _ = cluster.list("v1", "Pod", ns, label_selector=CONTROL_PLANE_SELECTOR)
    ok, seen = pods_ready()(pods)
    injection = injection_env(cluster.get("apps/v1", "Deployment", CONTROL_PLANE, ns) or {})
    return [checks.result(checks.MID010, ok, f"control plane in {ns}: {seen}"),
            checks.result(checks.MID022, injection == "true", f"{SPIRE_INJECTION_ENV}={injection}"),
            mesh_services_exclusive(cluster.get(KUMA, "Mesh", MESH) or {})]


def _spire(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    spire = p.spire
    server = cluster.get("v1", "Pod", spire.server_pod, spire.namespace)
    ok, seen = pods_ready()([server] if server else [])
    results = [checks.result(checks.MID020, ok, f"{spire.server_pod}: {seen}"),
               checks.result(checks.MID023, *datastore_claimable(cluster, spire, p.spire_persistence))]
    results += node_components(cluster, spire)
    crs, _ = cluster.list("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID")
    ok, seen = registration.reconciled(crs, p)
    ignored = registration.ignored_guide_cr(crs, p)
    try:
        entries = registration.demo_entries(cluster, p, p.timeouts.http_s)
    except ExternalCallError as exc:
        entries = (False, str(exc))
    return results + [checks.result(checks.MID030, ok, seen),
                      checks.result(checks.MID031, ignored is None, ignored or "no ignored ClusterSPIFFEID"),
                      checks.result(checks.MID032, *entries)]


def _identity(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    identities, _ = cluster.list(KUMA, "MeshIdentity", p.namespaces.control_plane)
    identities = live(identities)  # one being deleted no longer counts
    if not identities:
        return [checks.result(checks.MID040, False, f"no MeshIdentity in {p.namespaces.control_plane}")]
    results = []
    for obj in identities:
        name = obj["metadata"]["name"]
        results.append(checks.result(checks.MID041, not identity.services_disabled(obj), f"MeshIdentity {name}: "
                                     + conditions_text(obj)))
        results.append(checks.result(checks.MID040, is_true(obj, "Ready"),
                                     f"MeshIdentity {name}: " + conditions_text(obj)))
    pods, _ = cluster.list("v1", "Pod", p.namespaces.demo, label_selector=f"app in ({','.join(DEMO_WORKLOADS)})")
    results.append(socket_volumes(pods))
    services, _ = cluster.list(KUMA, "MeshService", p.namespaces.demo)
    ok, seen = identity.lists_identity(services, IDENTITY_SERVICE, p.workload_id())
    return results + [checks.result(checks.MID051, ok, seen)]


def _behaviour(cluster: Cluster, p: GuideParams) -> list[CheckResult]:
    mtp = traffic_permission(p)["metadata"]
    permitted = cluster.get(KUMA, "MeshTrafficPermission", mtp["name"], mtp["namespace"]) is not None
    with counter_probe(cluster, p.namespaces.demo, timeout_s=p.timeouts.http_s) as probe:
        answer = probe.call("GET")
    seen = f"GET /api/counter: HTTP {answer.status} {answer.body[:160]}" if answer.status else f"no answer: {answer.error}"
    if not permitted:
        return [checks.result(checks.MID060, denied(answer), f"without MeshTrafficPermission {mtp['name']}: {seen}")]
    served = answer.status == 200 and body_json(answer).get("zone") == ""  # GET reads; counter may be 0
    kv = serving_pod(cluster, p.namespaces.demo, IDENTITY_SERVICE)
    count = inbound_handshakes(cluster, p.namespaces.demo, kv, DEMO_PORT, p.timeouts.http_s)
    tls = (f"kv pod {kv}: listener *_{DEMO_PORT} ssl.handshake {count}" if count is not None
           else f"kv pod {kv}: no sidecar, or no TLS stats on its inbound listener {DEMO_PORT}")
    ids = served_ids(cluster, p.namespaces.demo, kv, p.timeouts.http_s)
    certs = "no sidecar" if ids is None else ", ".join(ids) or "no certificate"
    return [checks.result(checks.MID061, served, f"with MeshTrafficPermission {mtp['name']}: {seen}"),
            checks.result(checks.MID063, bool(count), tls),
            checks.result(checks.MID065, bool(ids) and p.workload_id() in ids, f"kv pod {kv} serves: {certs}; "
                          f"expected {p.workload_id()}")]


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
            out.append((group, [checks.result(checks.MID002, False, f"{group}: {exc}")]))
    return out
