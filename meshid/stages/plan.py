"""plan: preflight's checks, then what helm and a server-side dry run of every manifest would do; changes nothing."""

from __future__ import annotations

from meshid import checks
from meshid.errors import ExternalCallError
from meshid.kube import ApiError
from meshid.impact import scan
from meshid.manifests import (Manifest, cluster_spiffe_id, demo_objects, injection_env_values, mesh_identity,
                              probe_objects, spire_values, stamp, traffic_permission)
from meshid.models import RunMode
from meshid.stages import preflight
from meshid.stages.apply_mesh_identity import dropped_labels
from meshid.stages.run_context import RunContext
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
    """Preflight's checks (a rollout's impact among them), then what helm and a server-side dry run of every
    manifest would do (the rules equivalents of legacy permissions too); changes nothing."""
    ctx = ctx.on(preflight.run(ctx, out))
    if any(c.blocking and c.code != checks.MID091.code for c in out.checks):
        return  # an uncovered impact still gets its plan: it is what the operator decides on
    p, ns = ctx.params, ctx.params.namespaces
    for source, release, namespace, values in (
            (p.charts.kong_mesh, KONG_MESH_RELEASE, ns.control_plane, injection_env_values(p)),
            (p.charts.spire_crds, CRDS_RELEASE, ns.spire, []),
            (p.charts.spire, ns.spire_release, ns.spire, spire_values(p))):
        found = ctx.helm.status(release, namespace, p.timeouts.apply_s)
        action = ("would install" if found is None else "unchanged"
                  if ctx.release_current(found, source, namespace, values) else "would upgrade")
        out.touch("HelmRelease", namespace, release, action, f"{source.chart} {source.version}" + (
            f" over {found.chart} revision {found.revision}" if found else ""))
    objects = [*demo_objects(p), *probe_objects(p), cluster_spiffe_id(p), mesh_identity(p)]
    if p.mode is RunMode.ROLLOUT:
        impact, _ = scan(ctx.cluster, p)
        objects += [f.equivalent for f in impact.from_permissions if f.own or p.translate_permissions]
    objects.append(traffic_permission(p))
    created = {ns.control_plane, ns.spire} | {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    rejected = []
    for obj in objects:
        dropped = dropped_labels(ctx, obj) if obj["kind"] == "MeshIdentity" else {}
        action, detail = (("would update", f"its selector drops {', '.join(dropped)}") if dropped
                          else _dry_run(ctx, stamp(obj, ctx.run_id), created))
        meta = obj["metadata"]
        out.touch(obj["kind"], meta.get("namespace"), meta["name"], action, detail)
        if action == "rejected":
            rejected.append(f"{obj['kind']} {meta['name']}: {detail}")
    if rejected:
        raise ExternalCallError("server-side dry run", "; ".join(rejected))
