"""apply-demo: the guide's demo (namespace, services, deployments, Mesh, legacy MTP), then wait for it.

SPIRE injection is on from the control plane's install, so the demo's pods carry the SPIFFE CSI volume and, as on a
real cluster, cannot start before SPIRE's CSI driver is ready on their node (install-spire runs meanwhile). A wait
that gives up while they are held there says so (MID014) instead of a bare timeout.
"""

from __future__ import annotations

from meshid import csi
from meshid.kube import deployment_rolled_out
from meshid.manifests import demo_objects
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

LEGACY_MTP = "kv"


def held_by_csi(ctx: RunContext) -> tuple[str, str] | None:
    """MID014 and why, when the SPIFFE CSI driver holds demo pods (for waits on them that gave up)."""
    reason = csi.explain(ctx.cluster, ctx.params.namespaces.demo, ctx.params.spire)
    return ("MID014", reason) if reason else None


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the demo; every Deployment must become available (`kubectl wait --for=condition=available`)."""
    p = ctx.params
    ns = p.namespaces.demo
    objects = demo_objects(p)
    ctx.apply_all(objects, out)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]

    def all_available(deps: list[dict]) -> tuple[bool, str]:
        by_name = {d["metadata"]["name"]: d for d in deps}
        states = {n: deployment_rolled_out(by_name[n]) if n in by_name else (False, "missing") for n in names}
        return all(done for done, _ in states.values()), "; ".join(f"{n}: {seen}" for n, (_, seen) in states.items())

    available = checked_wait(out, "MID011", lambda: ctx.cluster.wait(
        f"demo deployments available in {ns}", "apps/v1", "Deployment", all_available, p.timeouts.wait_s,
        namespace=ns), lambda _: f"deployments {', '.join(names)} available in {ns}", lambda: held_by_csi(ctx))
    if available is None:
        return
    legacy = ctx.cluster.get("kuma.io/v1alpha1", "MeshTrafficPermission", LEGACY_MTP, ns)
    out.check("MID013", legacy is not None, f"legacy MeshTrafficPermission {ns}/{LEGACY_MTP} "
                                            + ("present" if legacy else "missing"))
