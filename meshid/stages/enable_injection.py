"""enable-injection: SPIRE socket injection on in the control plane, as a chart value so upgrades keep it.

install-kong-mesh already installs the chart with this value, so the control plane rolls out once; this stage
checks it is in force and upgrades the release only when it is not (an existing install, or a changed release).
The guide uses `kubectl set env`, which with helm 3 the next `helm upgrade` silently drops.
"""

from __future__ import annotations

from meshid import checks
from meshid.checks import Judgement
from meshid.manifests import SPIRE_INJECTION_ENV, injection_env_values
from meshid.stages.run_context import RunContext
from meshid.stages.install_kong_mesh import RELEASE
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

CONTROL_PLANE = "kong-mesh-control-plane"


def injection_env(deployment: dict) -> str | None:
    """The control plane's value of the SPIRE injection env, or None."""
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return next((e.get("value") for c in containers for e in c.get("env", []) if e["name"] == SPIRE_INJECTION_ENV),
                None)


@checks.evaluates(checks.MID022)
def injection_enabled(deployment: dict, ns: str) -> Judgement:
    """MID022 for the control plane's Deployment in `ns`: the SPIRE injection env is "true"."""
    value = injection_env(deployment)
    return value == "true", f"{SPIRE_INJECTION_ENV}={value} in deployment {ns}/{CONTROL_PLANE}"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Ensure the injection env, wait for the control plane's rollout, and check the env is in force."""
    p = ctx.params
    ns = p.namespaces.control_plane
    current = ctx.cluster.get("apps/v1", "Deployment", CONTROL_PLANE, ns) or {}
    if injection_env(current) != "true":
        ctx.install(p.charts.kong_mesh, RELEASE, ns, injection_env_values(p), out)
    dep = checked_wait(out, checks.MID022, lambda: ctx.cluster.wait_rollout(ns, CONTROL_PLANE, p.timeouts.wait_s))
    if dep is not None:
        out.touch("Deployment", ns, CONTROL_PLANE, "observed", f"{SPIRE_INJECTION_ENV}={injection_env(dep)}")
        out.check(checks.MID022, dep, ns)
