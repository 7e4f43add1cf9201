"""plan: preflight's checks, then what helm and a server-side dry run of every manifest would do; changes nothing."""

from __future__ import annotations

from meshid.errors import ExternalCallError
from meshid.kube import ApiError
from meshid.manifests import Manifest, cluster_spiffe_id, demo_objects, mesh_identity, stamp, traffic_permission
from meshid.stages import preflight
from meshid.stages.context import RunContext
from meshid.stages.install_kong_mesh import RELEASE as KONG_MESH_RELEASE
from meshid.stages.install_spire import CRDS_RELEASE
from meshid.stages.output import StageOutput


def _dry_run(ctx: RunContext, obj: Manifest, namespaces: set[str]) -> tuple[str, str]:
    """What applying `obj` would do, from a server-side dry run: (action, detail)."""
    meta = obj["metadata"]
    ns = meta.get("namespace")
    try:
        live = ctx.cluster.get(obj["apiVersion"], obj["kind"], meta["name"], ns)
        planned = ctx.cluster.apply(obj, dry_run=True)
    except ApiError as exc:
        if exc.transient:
            raise
        if exc.status == 404 and exc.what.startswith("discover"):
            return "pending", "would be created once the chart installs the CRD"
        if exc.status == 404 and ns in namespaces and f'namespaces "{ns}" not found' in exc.detail:
            return "pending", f"would be created once namespace {ns} exists"
        return "rejected", exc.detail
    if live is None:
        return "would create", "accepted by the server"
    same = all(live.get(k) == planned.get(k) for k in ("spec", "data")) and (
        live["metadata"].get("labels") == planned["metadata"].get("labels"))
    return ("unchanged", "matches the live object") if same else ("would update", "differs from the live object")


def run(ctx: RunContext, out: StageOutput) -> None:
    """Preflight's checks, then what helm and a server-side dry run of every manifest would do; changes nothing."""
    preflight.run(ctx, out)
    if out.blocked:
        return
    p, ns = ctx.params, ctx.params.namespaces
    for source, release, namespace in ((p.charts.kong_mesh, KONG_MESH_RELEASE, ns.control_plane),
                                       (p.charts.spire_crds, CRDS_RELEASE, ns.spire),
                                       (p.charts.spire, ns.spire_release, ns.spire)):
        found = ctx.helm.status(release, namespace, p.timeouts.apply_s)
        out.touch("HelmRelease", namespace, release, "would upgrade" if found else "would install",
                  f"{source.chart} {source.version}" + (f" over {found.chart} revision {found.revision}"
                                                         if found else ""))
    objects = [*demo_objects(p), cluster_spiffe_id(p), mesh_identity(p), traffic_permission(p)]
    created = {ns.control_plane, ns.spire} | {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    rejected = []
    for obj in objects:
        action, detail = _dry_run(ctx, stamp(obj, ctx.run_id), created)
        meta = obj["metadata"]
        out.touch(obj["kind"], meta.get("namespace"), meta["name"], action, detail)
        if action == "rejected":
            rejected.append(f"{obj['kind']} {meta['name']}: {detail}")
    if rejected:
        raise ExternalCallError("server-side dry run", "; ".join(rejected))
