"""preflight: tools, versions, reachability of an existing cluster, and the inputs' consistency; changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from meshid import checks, recovery, tools
from meshid.checks import Judgement
from meshid.errors import ExternalCallError
from meshid.helm import Helm
from meshid.manifests import MANAGED_BY, MANAGED_BY_LABEL
from meshid.impact import Impact, scan
from meshid.models import GuideParams, ProviderName, RunMode
from meshid.providers import ClusterHandle
from meshid.providers.base import Check
from meshid.runrecord import RunRecord
from meshid.stages.cluster_start import check_api
from meshid.stages.connectivity import permitting
from meshid.stages.install_spire import check_datastore
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


@checks.evaluates(checks.MID001)
def tool_usable(answer: str | ExternalCallError | Check) -> Judgement:
    """MID001 for one tool: helm's version (3 or 4), the error asking it, or a provider's check of its own tools (each
    provider knows what its tools must answer)."""
    if isinstance(answer, ExternalCallError):
        return False, str(answer)
    if isinstance(answer, str):
        return answer.startswith(("v3.", "v4.")), f"helm {answer}"
    return answer


@checks.evaluates(checks.MID003)
def trust_domains_consistent(p: GuideParams) -> Judgement:
    """MID003: one trust domain in SPIRE, the MeshIdentity and the permission."""
    problems = p.consistency_problems()
    return not problems, "; ".join(problems) or (
        f"trust domain {p.trust_domain} is the same in SPIRE, the MeshIdentity and the permission "
        f"({p.permission.type} {p.permission.resolved_value(p.trust_domain, p.namespaces.demo)})")


@checks.evaluates(checks.MID007)
def permission_matches(p: GuideParams) -> Judgement:
    """MID007: the permission admits the demo workloads' SPIFFE ID."""
    gap = p.permission_gap()
    value = p.permission.resolved_value(p.trust_domain, p.namespaces.demo)
    return gap is None, gap or f"{p.permission.type} {value} matches the demo workloads"


@checks.evaluates(checks.MID004)
def path_renders(p: GuideParams) -> Judgement:
    """MID004: parameters that parsed have a valid path template (a broken one is an InputError); what it renders."""
    return True, f"identity_path renders {p.workload_id()} for the demo workloads"


@checks.evaluates(checks.MID005)
def charts_pinned(p: GuideParams) -> Judgement:
    """MID005: parameters that parsed pin supported charts (anything else is an InputError); which."""
    charts = p.charts
    return True, (f"kong-mesh {charts.kong_mesh.version}, spire {charts.spire.version}, "
                  f"spire-crds {charts.spire_crds.version}")


@checks.evaluates(checks.MID090)
def earlier_runs_recovered(stale: list[RunRecord], runs_dir: Path) -> Judgement:
    """MID090: no earlier run on this cluster left unrecovered (`stale`: those whose process is gone)."""
    if not stale:
        return True, "no unrecovered earlier run on this cluster"
    commands = "; ".join(f"`{recovery.recover_command(run.run_id, runs_dir)}`" for run in stale)
    return False, (f"{len(stale)} earlier run(s) on this cluster never finished and their process is gone: "
                   f"{commands}")


@checks.evaluates(checks.MID006)
def no_leftovers(names: list[str]) -> Judgement:
    """MID006: no namespace labelled as meshid's (`names`) is left."""
    return not names, (f"namespaces left by an earlier meshid run: {', '.join(names)}" if names
                       else "no namespaces left by an earlier meshid run")


@checks.evaluates(checks.MID091)
def impact_covered(impact: Impact, p: GuideParams) -> Judgement:
    """MID091: everything the identity switch affects is covered by the rollout (or accepted)."""
    gaps = impact.uncovered(p.translate_permissions, p.accept_impact)
    return not gaps, f"selector {p.identity_selector or '{}'}: " + ("; ".join(gaps) if gaps else (
        f"{len(impact.workloads)} other workload(s), {len(impact.from_permissions)} legacy permission(s) affected, "
        "all covered"))


@checks.evaluates(checks.MID008)
def no_permission_yet(found: list[str], workload: str) -> Judgement:
    """MID008: no MeshTrafficPermission (`found`: those that do) lets `workload` in yet."""
    return not found, (f"MeshTrafficPermission {', '.join(found)} already lets {workload} in: "
                       "connectivity-before-permission cannot see a denial" if found
                       else f"no MeshTrafficPermission lets {workload} in yet")


def run(ctx: RunContext, out: StageOutput) -> ClusterHandle | None:
    """Check everything that can be checked before the run changes anything; an existing cluster is reached for
    that, and its handle returned."""
    p = ctx.params
    for check in (checks.MID003, checks.MID007, checks.MID004, checks.MID005):
        out.check(check, p)
    try:
        helm = Helm(ctx.run_dir / "no-kubeconfig", binary=tools.find(ctx.settings.helm_bin, ctx.settings.home))
        version = helm.version(p.timeouts.apply_s)
        out.check(checks.MID001, version)
        out.versions["helm"] = version
    except ExternalCallError as exc:
        out.check(checks.MID001, exc)
    for found in ctx.provider.preflight():
        out.check(checks.MID001, found)
    _earlier_runs_finished(ctx, out)
    if p.target.provider is ProviderName.CONTEXT and not out.blocked:
        return _existing_cluster(ctx, out)
    return None


def _earlier_runs_finished(ctx: RunContext, out: StageOutput) -> None:
    runs_dir = ctx.settings.runs_dir
    out.check(checks.MID090, recovery.unrecovered_on(runs_dir, ctx.ledger.run), runs_dir)


def _existing_cluster(ctx: RunContext, out: StageOutput) -> ClusterHandle:
    handle = ctx.provider.start(ctx.params.timeouts.apply_s)
    ctx = ctx.on(handle)
    check_api(ctx.cluster, out, f"context {handle.context or '(current)'}")
    check_datastore(ctx.cluster, out, ctx.params)
    if ctx.params.mode is RunMode.ROLLOUT:
        rollout_impact(ctx, out)
        return handle  # a rollout finds its own earlier work in place: that is what it converges, not a leftover
    leftovers, _ = ctx.cluster.list("v1", "Namespace", label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}")
    out.check(checks.MID006, [n["metadata"]["name"] for n in leftovers])
    _no_permission_yet(ctx, out)
    return handle


def rollout_impact(ctx: RunContext, out: StageOutput) -> Impact:
    """What the identity switch would affect (a table and impact.json in the run dir); MID091 fails on anything the
    rollout does not cover."""
    p = ctx.params
    impact, _ = scan(ctx.cluster, p)
    out.tables["impact"] = impact.rows()
    (ctx.run_dir / "impact.json").write_text(json.dumps(impact.to_json(), indent=2) + "\n", encoding="utf-8")
    out.check(checks.MID091, impact, p)
    return impact


def _no_permission_yet(ctx: RunContext, out: StageOutput) -> None:
    out.check(checks.MID008, permitting(ctx), ctx.params.workload_id())
