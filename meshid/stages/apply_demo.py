"""apply-demo: the guide's demo (namespace, services, deployments, Mesh, legacy MTP), then wait for it.

SPIRE injection is on from the control plane's install, so the demo's pods carry the SPIFFE CSI volume and, as on a
real cluster, cannot start before SPIRE's CSI driver is ready on their node (install-spire runs meanwhile). A wait
that gives up while they are held there says so (MID014) instead of a bare timeout.
"""

from __future__ import annotations

from meshid import checks, csi
from meshid.kube import deployment_rolled_out
from meshid.manifests import demo_objects, probe_objects
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

LEGACY_MTP = "kv"


def held_by_csi(ctx: RunContext) -> tuple[checks.CheckSpec, str] | None:
    """MID014 and why, when the SPIFFE CSI driver holds the demo's or the probe's pods (for waits on them that gave
    up)."""
    p = ctx.params
    reasons = [r for ns in (p.namespaces.demo, p.namespaces.probe) if (r := csi.explain(ctx.cluster, ns, p.spire))]
    return (checks.MID014, "; ".join(reasons)) if reasons else None


def _available(names: list[str]):  # noqa: ANN202 - a wait condition
    def check(deps: list[dict]) -> tuple[bool, str]:
        by_name = {d["metadata"]["name"]: d for d in deps}
        states = {n: deployment_rolled_out(by_name[n]) if n in by_name else (False, "missing") for n in names}
        return all(done for done, _ in states.values()), "; ".join(f"{n}: {seen}" for n, (_, seen) in states.items())

    return check


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the demo and the negative probe; every Deployment must become available (`kubectl wait
    --for=condition=available`)."""
    p = ctx.params
    objects = demo_objects(p) + probe_objects(p)
    ctx.apply_all(objects, out)
    for ns in (p.namespaces.demo, p.namespaces.probe):
        names = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and o["metadata"]["namespace"] == ns]
        available = checked_wait(out, checks.MID011, lambda ns=ns, names=names: ctx.cluster.wait(
            f"deployments available in {ns}", "apps/v1", "Deployment", _available(names), p.timeouts.wait_s,
            namespace=ns), lambda _, ns=ns, names=names: f"deployments {', '.join(names)} available in {ns}",
            lambda: held_by_csi(ctx))
        if available is None:
            return
    ns = p.namespaces.demo
    legacy = ctx.cluster.get("kuma.io/v1alpha1", "MeshTrafficPermission", LEGACY_MTP, ns)
    out.check(checks.MID013, legacy is not None, f"legacy MeshTrafficPermission {ns}/{LEGACY_MTP} "
                                                 + ("present" if legacy else "missing"))
