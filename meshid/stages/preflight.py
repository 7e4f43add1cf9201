"""preflight: tools, versions, reachability of an existing cluster, and the inputs' consistency; changes nothing."""

from __future__ import annotations

import json

from meshid import checks, recovery, tools
from meshid.errors import ExternalCallError
from meshid.helm import Helm
from meshid.manifests import MANAGED_BY, MANAGED_BY_LABEL
from meshid.impact import Impact, scan
from meshid.models import ProviderName, RunMode
from meshid.providers import ClusterHandle
from meshid.stages.connectivity import permitting
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.storage import datastore_claimable


def run(ctx: RunContext, out: StageOutput) -> ClusterHandle | None:
    """Check everything that can be checked before the run changes anything; an existing cluster is reached for
    that, and its handle returned."""
    p = ctx.params
    problems = p.consistency_problems()
    value = p.permission.resolved_value(p.trust_domain, p.namespaces.demo)
    out.check(checks.MID003, not problems, "; ".join(problems) or (
        f"trust domain {p.trust_domain} is the same in SPIRE, the MeshIdentity and the permission "
        f"({p.permission.type} {value})"))
    gap = p.permission_gap()
    out.check(checks.MID007, gap is None, gap or f"{p.permission.type} {value} matches the demo workloads")
    workload = p.workload_id()
    out.check(checks.MID004, True, f"identity_path renders {workload} for the demo workloads")
    charts = p.charts
    out.check(checks.MID005, True, f"kong-mesh {charts.kong_mesh.version}, spire {charts.spire.version}, "
                                   f"spire-crds {charts.spire_crds.version}")
    try:
        helm = Helm(ctx.run_dir / "no-kubeconfig", binary=tools.find(ctx.settings.helm_bin, ctx.settings.home))
        version = helm.version(p.timeouts.apply_s)
        out.check(checks.MID001, version.startswith(("v3.", "v4.")), f"helm {version}")
        out.versions["helm"] = version
    except ExternalCallError as exc:
        out.check(checks.MID001, False, str(exc))
    for ok, message in ctx.provider.preflight():
        out.check(checks.MID001, ok, message)
    _earlier_runs_finished(ctx, out)
    if p.target.provider is ProviderName.CONTEXT and not out.blocked:
        return _existing_cluster(ctx, out)
    return None


def _earlier_runs_finished(ctx: RunContext, out: StageOutput) -> None:
    runs_dir = ctx.settings.runs_dir
    stale = recovery.unrecovered_on(runs_dir, ctx.ledger.run)
    commands = "; ".join(f"`{recovery.recover_command(run.run_id, runs_dir)}`" for run in stale)
    out.check(checks.MID090, not stale,
              f"{len(stale)} earlier run(s) on this cluster never finished and their process is gone: {commands}"
              if stale else "no unrecovered earlier run on this cluster")


def _existing_cluster(ctx: RunContext, out: StageOutput) -> ClusterHandle:
    handle = ctx.provider.start(ctx.params.timeouts.apply_s)
    ctx = ctx.on(handle)
    version = ctx.cluster.version()
    out.check(checks.MID002, True, f"context {handle.context or '(current)'} answers: Kubernetes {version}")
    out.check(checks.MID023, *datastore_claimable(ctx.cluster, ctx.params.spire, ctx.params.spire_persistence))
    if ctx.params.mode is RunMode.ROLLOUT:
        rollout_impact(ctx, out)
        return handle  # a rollout finds its own earlier work in place: that is what it converges, not a leftover
    leftovers, _ = ctx.cluster.list("v1", "Namespace", label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}")
    names = [n["metadata"]["name"] for n in leftovers]
    out.check(checks.MID006, not names, f"namespaces left by an earlier meshid run: {', '.join(names)}" if names
              else "no namespaces left by an earlier meshid run")
    _no_permission_yet(ctx, out)
    return handle


def rollout_impact(ctx: RunContext, out: StageOutput) -> Impact:
    """What the identity switch would affect (a table and impact.json in the run dir); MID091 fails on anything the
    rollout does not cover."""
    p = ctx.params
    impact, _ = scan(ctx.cluster, p)
    out.tables["impact"] = impact.rows()
    (ctx.run_dir / "impact.json").write_text(json.dumps(impact.to_json(), indent=2) + "\n", encoding="utf-8")
    gaps = impact.uncovered(p.translate_permissions, p.accept_impact)
    selected = f"selector {p.identity_selector or '{}'}"
    out.check(checks.MID091, not gaps, f"{selected}: " + ("; ".join(gaps) if gaps else
              f"{len(impact.workloads)} other workload(s), {len(impact.from_permissions)} legacy permission(s) "
              "affected, all covered"))
    return impact


def _no_permission_yet(ctx: RunContext, out: StageOutput) -> None:
    workload = ctx.params.workload_id()
    found = permitting(ctx)
    out.check(checks.MID008, not found, f"MeshTrafficPermission {', '.join(found)} already lets {workload} in: "
                                        "connectivity-before-permission cannot see a denial" if found
              else f"no MeshTrafficPermission lets {workload} in yet")
