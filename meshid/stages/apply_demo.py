"""apply-demo: the guide's demo (namespace, services, deployments, Mesh, legacy MTP), then wait for it."""

from __future__ import annotations

from meshid.kube import deployment_rolled_out
from meshid.manifests import demo_objects
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

LEGACY_MTP = "kv"


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

    checked_wait(out, "MID011", lambda: ctx.cluster.wait(f"demo deployments available in {ns}", "apps/v1",
                                                         "Deployment", all_available, p.timeouts.wait_s, namespace=ns),
                 lambda _: f"deployments {', '.join(names)} available in {ns}")
    legacy = ctx.cluster.get("kuma.io/v1alpha1", "MeshTrafficPermission", LEGACY_MTP, ns)
    out.check("MID013", legacy is not None, f"legacy MeshTrafficPermission {ns}/{LEGACY_MTP} "
                                            + ("present" if legacy else "missing"))
