"""apply-demo: the guide's demo (namespace, services, deployments, Mesh, legacy MTP), then wait for it.

SPIRE injection is on from the control plane's install, so the demo's pods carry the SPIFFE CSI volume and, as on a
real cluster, cannot start before SPIRE's CSI driver is ready on their node (install-spire runs meanwhile). A wait
that gives up while they are held there says so (MID014) instead of a bare timeout.
"""

from __future__ import annotations

from meshid import checks, csi
from meshid.checks import Judgement
from meshid.conditions import Obj
from meshid.kube import deployment_rolled_out
from meshid.manifests import demo_objects, probe_objects
from meshid.results import CheckResult
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import waited_check

LEGACY_MTP = "kv"


@checks.evaluates(checks.MID014)
def csi_mounts(held: list[str], waited_s: float) -> Judgement:
    """MID014 for a wait on pods that gave up after `waited_s`: why the SPIFFE CSI driver holds pods (`csi.explain`,
    per namespace), none when it holds none."""
    if held:
        return False, f"{'; '.join(held)} (gave up after {waited_s:g}s)"
    return True, "no pod waits for the SPIFFE CSI driver"


def held_by_csi(ctx: RunContext, waited_s: float) -> CheckResult | None:
    """MID014 failed, when the SPIFFE CSI driver holds the demo's or the probe's pods (for waits on them that gave up
    after `waited_s`)."""
    p = ctx.params
    held = [r for ns in (p.namespaces.demo, p.namespaces.probe) if (r := csi.explain(ctx.cluster, ns, p.spire))]
    return checks.MID014.result(held, waited_s) if held else None


@checks.evaluates(checks.MID011)
def deployments_available(deployments: list[Obj], names: list[str], ns: str) -> Judgement:
    """MID011 for the Deployments of `ns`: each of `names` rolled out and available."""
    by_name = {d["metadata"]["name"]: d for d in deployments}
    states = {n: deployment_rolled_out(by_name[n]) if n in by_name else (False, "missing") for n in names}
    if all(done for done, _ in states.values()):
        return True, f"deployments {', '.join(names)} available in {ns}"
    return False, "; ".join(f"{n}: {seen}" for n, (_, seen) in states.items())


@checks.evaluates(checks.MID013)
def legacy_permission(permission: Obj | None, ns: str) -> Judgement:
    """MID013 for the demo's legacy MeshTrafficPermission in `ns` (None when it is missing): present."""
    return permission is not None, f"legacy MeshTrafficPermission {ns}/{LEGACY_MTP} " + (
        "present" if permission else "missing")


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the demo and the negative probe; every Deployment must become available (`kubectl wait
    --for=condition=available`)."""
    p = ctx.params
    objects = demo_objects(p) + probe_objects(p)
    ctx.apply_all(objects, out)
    for ns in (p.namespaces.demo, p.namespaces.probe):
        names = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment" and o["metadata"]["namespace"] == ns]
        if waited_check(out, checks.MID011, lambda ns=ns, names=names: ctx.cluster.wait(
                f"deployments available in {ns}", "apps/v1", "Deployment",
                lambda found: deployments_available(found, names, ns), p.timeouts.wait_s, namespace=ns),
                names, ns, explain=lambda waited_s: held_by_csi(ctx, waited_s)) is None:
            return
    ns = p.namespaces.demo
    out.check(checks.MID013, ctx.cluster.get("kuma.io/v1alpha1", "MeshTrafficPermission", LEGACY_MTP, ns), ns)
