"""restart-workloads: `kubectl rollout restart` the demo so pods are re-created with the SPIRE socket."""

from __future__ import annotations

from meshid import checks
from meshid.checks import Judgement
from meshid.conditions import Obj, has_volume, live
from meshid.identity import lists_identity
from meshid.manifests import DEMO_WORKLOADS as DEPLOYMENTS
from meshid.models import RunMode
from meshid.stages.apply_demo import held_by_csi
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait, waited_check

SOCKET_VOLUME = "kuma-spire-agent-socket"
IDENTITY_SERVICE = "kv"


def _without_socket(ctx: RunContext, ns: str) -> list[str]:
    """The demo Deployments with a live pod that lacks the SPIRE socket volume (created before injection was on)."""
    pods, _ = ctx.cluster.list("v1", "Pod", ns, label_selector=f"app in ({','.join(DEPLOYMENTS)})")
    lacking = {p["metadata"].get("labels", {}).get("app") for p in live(pods) if not has_volume(p, SOCKET_VOLUME)}
    return [name for name in DEPLOYMENTS if name in lacking]


@checks.evaluates(checks.MID050)
def socket_volumes(pods: list[Obj]) -> Judgement:
    """MID050 for the demo's pods: every live one carries the SPIRE agent socket volume (injected after SPIRE
    injection was on)."""
    running = live(pods)
    missing = [pod["metadata"]["name"] for pod in running if not has_volume(pod, SOCKET_VOLUME)]
    if not running:
        return False, "no demo pod that is not being deleted"
    return not missing, (f"pods without {SOCKET_VOLUME}: {', '.join(missing)}" if missing
                         else f"{len(running)} demo pods carry {SOCKET_VOLUME}")


def run(ctx: RunContext, out: StageOutput) -> None:
    """Restart demo-app and kv (in a rollout only those whose pods lack the SPIRE socket: a restart is a moment of
    new pods without their SVID yet), wait for the rollouts, check the pods and the MeshService identity."""
    p = ctx.params
    ns = p.namespaces.demo
    restart = DEPLOYMENTS if p.mode is RunMode.VALIDATE else _without_socket(ctx, ns)
    for name in restart:
        ctx.cluster.rollout_restart(ns, name)
        out.touch("Deployment", ns, name, "restarted")
    for name in restart:
        if checked_wait(out, checks.MID050, lambda name=name: ctx.cluster.wait_rollout(ns, name, p.timeouts.wait_s),
                        lambda waited_s: held_by_csi(ctx, waited_s)) is None:
            return
    pods, _ = ctx.cluster.list("v1", "Pod", ns, label_selector=f"app in ({','.join(DEPLOYMENTS)})")
    for pod in live(pods):
        carries = "yes" if has_volume(pod, SOCKET_VOLUME) else "NO"
        out.touch("Pod", ns, pod["metadata"]["name"], "observed", f"{SOCKET_VOLUME}: {carries}")
    out.check(checks.MID050, pods)

    expected = p.workload_id()
    waited_check(out, checks.MID051, lambda: ctx.cluster.wait(
        f"MeshService {ns}/{IDENTITY_SERVICE} listing {expected}", "kuma.io/v1alpha1", "MeshService",
        lambda found: lists_identity(found, IDENTITY_SERVICE, expected), p.timeouts.wait_s, namespace=ns),
        IDENTITY_SERVICE, expected)
