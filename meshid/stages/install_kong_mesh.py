"""install-kong-mesh: helm upgrade --install the pinned Kong Mesh chart and wait for the control plane.

The chart gets the SPIRE injection env from the start (see enable-injection), so the control plane rolls out once.
"""

from __future__ import annotations

from meshid import checks
from meshid.conditions import pods_ready
from meshid.manifests import injection_env_values
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

RELEASE = "kong-mesh"
KUMA_GROUP = "kuma.io"  # the chart's crds/ (helm never deletes them) and its install-crds hook apply these
CONTROL_PLANE_SELECTOR = "app=kong-mesh-control-plane"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Install Kong Mesh; its control-plane pods must become Ready."""
    p = ctx.params
    ns = p.namespaces.control_plane
    ctx.install(p.charts.kong_mesh, RELEASE, ns, injection_env_values(p), out,  # one control-plane rollout
                crd_group=KUMA_GROUP)
    checked_wait(out, checks.MID010, lambda: ctx.cluster.wait(
        f"control-plane pods ({CONTROL_PLANE_SELECTOR}) Ready in {ns}", "v1", "Pod", pods_ready(), p.timeouts.wait_s,
        namespace=ns, label_selector=CONTROL_PLANE_SELECTOR),
        lambda pods: f"{len(pods)} control-plane pod(s) Ready in {ns}")
