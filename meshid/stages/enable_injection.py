"""enable-injection: turn on SPIRE socket injection in the control plane, as a chart value so upgrades keep it.

The guide uses `kubectl set env`, which the next `helm upgrade` silently drops; the chart value
`kuma.controlPlane.envVars.<NAME>` gives the same env and survives upgrades.
"""

from __future__ import annotations

from meshid.manifests import SPIRE_INJECTION_ENV, injection_env_values
from meshid.stages.context import RunContext
from meshid.stages.install_kong_mesh import RELEASE
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

CONTROL_PLANE = "kong-mesh-control-plane"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Upgrade the release with the injection env, wait for the rollout, and check the env is in place."""
    p = ctx.params
    ns = p.namespaces.control_plane
    ctx.install(p.charts.kong_mesh, RELEASE, ns, injection_env_values(p), out, reuse_values=True)
    dep = checked_wait(out, "MID022", lambda: ctx.cluster.wait_rollout(ns, CONTROL_PLANE, p.timeouts.wait_s),
                       lambda _: f"deployment {ns}/{CONTROL_PLANE} rolled out")
    if dep is None:
        return
    env = {e["name"]: e.get("value") for c in dep["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    out.check("MID022", env.get(SPIRE_INJECTION_ENV) == "true",
              f"{SPIRE_INJECTION_ENV}={env.get(SPIRE_INJECTION_ENV)!s} in deployment {ns}/{CONTROL_PLANE}")
