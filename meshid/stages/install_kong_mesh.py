"""install-kong-mesh: helm upgrade --install the pinned Kong Mesh chart and wait for the control plane.

The chart gets the SPIRE injection env from the start (see enable-injection), so the control plane rolls out once.
"""

from __future__ import annotations

from meshid import checks
from meshid.checks import Judgement
from meshid.conditions import Obj, pods_ready
from meshid.manifests import injection_env_values
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import waited_check

RELEASE = "kong-mesh"
KUMA_GROUP = "kuma.io"  # the chart's crds/ (helm never deletes them) and its install-crds hook apply these
CONTROL_PLANE_SELECTOR = "app=kong-mesh-control-plane"


@checks.evaluates(checks.MID010)
def control_plane_ready(pods: list[Obj], ns: str) -> Judgement:
    """MID010 for the control plane's pods in `ns`: at least one, all Running and Ready."""
    ok, seen = pods_ready()(pods)
    return ok, f"{len(pods)} control-plane pod(s) Ready in {ns}" if ok else f"control plane in {ns}: {seen}"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Install Kong Mesh; its control-plane pods must become Ready."""
    p = ctx.params
    ns = p.namespaces.control_plane
    ctx.install(p.charts.kong_mesh, RELEASE, ns, injection_env_values(p), out,  # one control-plane rollout
                crd_group=KUMA_GROUP)
    waited_check(out, checks.MID010, lambda: ctx.cluster.wait(
        f"control-plane pods ({CONTROL_PLANE_SELECTOR}) Ready in {ns}", "v1", "Pod",
        lambda found: control_plane_ready(found, ns), p.timeouts.wait_s, namespace=ns,
        label_selector=CONTROL_PLANE_SELECTOR), ns)
