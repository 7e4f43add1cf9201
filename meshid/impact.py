"""What switching workload identity to SPIRE would affect on a cluster, found before anything changes.

A MeshIdentity selects data planes by label (`selector.dataplane.matchLabels`; the guide's `{}` selects all of the
mesh). Once a selected proxy carries its SPIRE identity, on Kong Mesh 2.12:
- an inbound with only legacy `from` MeshTrafficPermissions admits nothing from identity-bearing clients: `from`
  matches tag principals, which no SPIFFE certificate carries (see ../shared/reference/kong-mesh-spire.md); the fix
  is an equivalent `rules` permission, allowing each client by the SPIFFE IDs it has before the switch (its mesh CA
  certificate's `spiffe://<mesh>/<service>`) and after it (the MeshIdentity's rendered ID). A `rules` permission on an
  inbound makes Kuma ignore that inbound's `from` permissions, so the equivalent must list the legacy IDs too;
- a selected proxy trusts only SPIRE's bundle and an unselected one only the mesh CA (kumahq/kuma 2.12.3
  pkg/core/resources/apis/meshidentity/providers/spire/spire.go: the validation context is SPIRE's "ALL" bundle), so
  traffic across the selector's edge stops: every selected workload beyond meshid's own is impact to accept;
- a selected pod without the SPIRE socket volume keeps its old certificate until it is restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from meshid.dataplanes import Dataplane, dataplanes, matches_labels, policy_applies, ref_selects
from meshid.errors import InputError
from meshid.kube import ApiError

if TYPE_CHECKING:
    from meshid.kube import Cluster
    from meshid.models import GuideParams

Obj = dict[str, Any]
FROM_RANK = {"Mesh": 1, "MeshSubset": 2, "MeshService": 3, "MeshServiceSubset": 4}  # Kuma: more specific wins
ACTION_KEYS = {"Allow": "allow", "Deny": "deny", "AllowWithShadowDeny": "allowWithShadowDeny"}
EQUIVALENT_OF = "meshid.io/equivalent-of"


@dataclass(frozen=True)
class IdentityPlan:
    """What the switch is: who gets identity, under which SPIFFE IDs, and which namespaces are meshid's own."""

    selector: dict[str, str]
    trust_domain: str
    render_path: Any  # (namespace, service account) -> the MeshIdentity's path for them
    own_namespaces: frozenset[str]
    system_namespace: str

    def identity_id(self, dp: Dataplane) -> str:
        """The SPIFFE ID a selected data plane's SPIRE certificate carries."""
        return f"spiffe://{self.trust_domain}{self.render_path(dp.namespace, dp.service_account)}"


@dataclass(frozen=True)
class FromPermission:
    """A legacy `from` permission that stops admitting identity-bearing clients, and its `rules` equivalent."""

    namespace: str
    name: str
    servers: tuple[str, ...]  # namespace/workload of the selected data planes it applies to
    equivalent: Obj
    own: bool  # meshid's own demo's permission: meshid applies its equivalent unasked


@dataclass
class Impact:
    """Everything the switch affects beyond meshid's own workloads, and the permissions it would break."""

    from_permissions: list[FromPermission] = field(default_factory=list)
    workloads: list[str] = field(default_factory=list)  # namespace/workload selected beyond meshid's own
    restarts: list[str] = field(default_factory=list)  # of those, the ones without the SPIRE socket

    def uncovered(self, translate: bool, accept: bool) -> list[str]:
        """What a rollout would break that neither a translated permission nor an acceptance covers."""
        found = [f"MeshTrafficPermission {p.namespace}/{p.name} (from) on {', '.join(p.servers)}"
                 for p in self.from_permissions if not (p.own or translate)]
        if not accept:
            found += [f"workload {w} gets identity (traffic with unselected workloads stops)" for w in self.workloads]
            found += [f"workload {w} needs a restart to get the SPIRE socket" for w in self.restarts]
        return found

    def rows(self) -> list[dict[str, str]]:
        """One row per finding, for the plan's table artifact."""
        rows = [{"impact": "from permission", "where": f"{p.namespace}/{p.name}", "detail": "applies to "
                 + ", ".join(p.servers), "covered by": f"rules permission {p.equivalent['metadata']['name']}"
                 + (" (meshid's own)" if p.own else " (translate_permissions)")} for p in self.from_permissions]
        rows += [{"impact": "workload gets identity", "where": w, "detail": "its traffic with unselected workloads "
                  "stops (certificates no longer trust each other)", "covered by": "accept_impact"}
                 for w in self.workloads]
        rows += [{"impact": "restart needed", "where": w, "detail": "pods lack the SPIRE socket; meshid restarts "
                  "only its own workloads", "covered by": "accept_impact"} for w in self.restarts]
        return rows

    def to_json(self) -> dict[str, Any]:
        """The impact as JSON (plan report, artifacts)."""
        return {"from_permissions": [{"namespace": p.namespace, "name": p.name, "servers": list(p.servers),
                                      "equivalent": p.equivalent, "own": p.own} for p in self.from_permissions],
                "workloads": list(self.workloads), "restarts": list(self.restarts)}


def _ids(clients: list[Dataplane], plan: IdentityPlan, after: bool) -> list[str]:
    ids = []
    for dp in clients:
        ids += dp.legacy_ids()
        if after and matches_labels(plan.selector, dp):
            ids.append(plan.identity_id(dp))
    return sorted(set(ids))


def equivalent(permission: Obj, dataplanes: list[Dataplane], plan: IdentityPlan, own: bool = False) -> Obj:
    """A `rules` MeshTrafficPermission equivalent to a `from` one: the same targetRef, one rule per `from` entry, most
    specific first (first match wins in rules, the most specific entry in `from`), each allowing (denying) the
    matched clients by their SPIFFE IDs before and after the switch; a `Mesh` entry by the mesh's and the trust
    domain's ID prefixes. A permission that matches no client today admits nobody: its equivalent denies. The
    equivalent of meshid's `own` demo permission admits the clients' legacy IDs only: it bridges the moments before
    the switch, and afterwards the guide's permission alone must let the demo in (or connectivity fails and says so)."""
    meta, spec = permission["metadata"], permission.get("spec") or {}
    entries = sorted(enumerate(spec.get("from") or []),
                     key=lambda ie: (-FROM_RANK.get((ie[1].get("targetRef") or {}).get("kind", "Mesh"), 0), ie[0]))
    mesh = (meta.get("labels") or {}).get("kuma.io/mesh", "default")
    rules = []
    for _, entry in entries:
        ref = entry.get("targetRef") or {"kind": "Mesh"}
        key = ACTION_KEYS.get((entry.get("default") or {}).get("action", "Allow"), "allow")
        if ref.get("kind") == "Mesh":
            domains = (mesh,) if own else (mesh, plan.trust_domain)
            matches = [{"spiffeID": {"type": "Prefix", "value": f"spiffe://{td}"}} for td in domains]
        else:
            ids = _ids([dp for dp in dataplanes if dp.mesh == mesh and ref_selects(ref, dp)], plan, after=not own)
            matches = [{"spiffeID": {"type": "Exact", "value": i}} for i in ids]
        if matches:
            rules.append({"default": {key: matches}})
    annotations = {EQUIVALENT_OF: f"{meta['namespace']}/{meta['name']}"}
    body: Obj = {"rules": rules or [{"default": {"deny": [{"spiffeID": {"type": "Prefix",
                                                                        "value": f"spiffe://{plan.trust_domain}"}}]}}]}
    if spec.get("targetRef"):
        body = {"targetRef": spec["targetRef"], **body}
    return {"apiVersion": "kuma.io/v1alpha1", "kind": "MeshTrafficPermission",
            "metadata": {"name": f"{meta['name']}-identity"[:253], "namespace": meta["namespace"],
                         "labels": {"kuma.io/mesh": mesh}, "annotations": annotations},
            "spec": body}


def analyse(dataplanes: list[Dataplane], permissions: list[Obj], plan: IdentityPlan) -> Impact:
    """What giving the selected data planes their SPIRE identity affects."""
    selected = [dp for dp in dataplanes if matches_labels(plan.selector, dp)]
    impact = Impact()
    for permission in permissions:
        spec, meta = permission.get("spec") or {}, permission["metadata"]
        if not spec.get("from") or meta.get("deletionTimestamp"):
            continue
        servers = sorted({f"{dp.namespace}/{dp.workload}" for dp in selected
                          if policy_applies(permission, dp, plan.system_namespace)})
        if servers:
            own = meta["namespace"] in plan.own_namespaces
            impact.from_permissions.append(FromPermission(meta["namespace"], meta["name"], tuple(servers),
                                                          equivalent(permission, dataplanes, plan, own), own))
    others = [dp for dp in selected if dp.namespace not in plan.own_namespaces]
    impact.workloads = sorted({f"{dp.namespace}/{dp.workload}" for dp in others})
    impact.restarts = sorted({f"{dp.namespace}/{dp.workload}" for dp in others if not dp.spire_socket})
    return impact


def plan_of(params: GuideParams) -> IdentityPlan:
    """The identity switch a run's parameters make."""
    def render(namespace: str, service_account: str) -> str:
        try:
            return params.spiffe_id(namespace, service_account).removeprefix(f"spiffe://{params.trust_domain}")
        except InputError:  # a path needing pod labels: preflight fails it (MID003) before anything changes
            return f"/ns/{namespace}/sa/{service_account}"

    ns = params.namespaces
    return IdentityPlan(dict(params.identity_selector), params.trust_domain, render,
                        frozenset({ns.demo, ns.probe}), ns.control_plane)


def scan(cluster: Cluster, params: GuideParams) -> tuple[Impact, list[Dataplane]]:
    """The impact of the run's identity switch on the cluster as it is now (nothing when Kong Mesh is not there)."""
    pods, _ = cluster.list("v1", "Pod")
    services, _ = cluster.list("v1", "Service")
    try:
        permissions, _ = cluster.list("kuma.io/v1alpha1", "MeshTrafficPermission")
    except ApiError as exc:
        if exc.status != 404:
            raise
        permissions = []  # no Kong Mesh yet: no permission to break
    found = dataplanes(pods, services)
    return analyse(found, permissions, plan_of(params)), found
