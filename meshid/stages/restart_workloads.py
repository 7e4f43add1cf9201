"""restart-workloads: `kubectl rollout restart` the demo so pods are re-created with the SPIRE socket."""

from __future__ import annotations

from meshid.conditions import has_volume, live
from meshid.models import DEMO_SERVICE_ACCOUNT
from meshid.spiffe import render_path
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

DEPLOYMENTS = ("demo-app", "kv")
SOCKET_VOLUME = "kuma-spire-agent-socket"
IDENTITY_SERVICE = "kv"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Restart demo-app and kv, wait for both rollouts, check the new pods and the MeshService identity."""
    p = ctx.params
    ns = p.namespaces.demo
    for name in DEPLOYMENTS:
        ctx.cluster.rollout_restart(ns, name)
        out.touch("Deployment", ns, name, "restarted")
    for name in DEPLOYMENTS:
        if checked_wait(out, "MID050", lambda name=name: ctx.cluster.wait_rollout(ns, name, p.timeouts.wait_s),
                        lambda _, name=name: f"deployment {name} rolled out") is None:
            return
    pods, _ = ctx.cluster.list("v1", "Pod", ns, label_selector=f"app in ({','.join(DEPLOYMENTS)})")
    missing = []
    for pod in live(pods):
        ok = has_volume(pod, SOCKET_VOLUME)
        out.touch("Pod", ns, pod["metadata"]["name"], "observed", f"{SOCKET_VOLUME}: {'yes' if ok else 'NO'}")
        if not ok:
            missing.append(pod["metadata"]["name"])
    out.check("MID050", bool(pods) and not missing,
              f"pods without {SOCKET_VOLUME}: {', '.join(missing)}" if missing else
              f"{len(live(pods))} restarted pods carry {SOCKET_VOLUME}")

    expected = {"type": "SpiffeID",
                "value": f"spiffe://{p.trust_domain}{render_path(p.identity_path, ns, DEMO_SERVICE_ACCOUNT, p.trust_domain)}"}

    def listed(services: list[dict]) -> tuple[bool, str]:
        svc = next((s for s in services if s["metadata"]["name"] == IDENTITY_SERVICE), None)
        identities = (svc or {}).get("spec", {}).get("identities", []) or []
        return expected in identities, f"MeshService {IDENTITY_SERVICE} identities: {identities or 'none'}"

    checked_wait(out, "MID051", lambda: ctx.cluster.wait(
        f"MeshService {ns}/{IDENTITY_SERVICE} listing {expected['value']}", "kuma.io/v1alpha1", "MeshService",
        listed, p.timeouts.wait_s, namespace=ns), lambda _: f"MeshService {IDENTITY_SERVICE} lists {expected['value']}")
