"""connectivity-probe: enforcement proven without denying anyone real traffic.

The negative probe is the counter demo as a client of kv, in its own namespace (apply-demo deploys it with the demo),
so its SPIFFE ID is one the permission does not admit. It must be denied (the guide's 500 "failed to retrieve zone")
while demo-app is allowed. Its denial proves something only if the probe itself carries a SPIRE identity (a client
without a certificate is refused by any mTLS inbound): SPIRE must hold an entry for it. The probe is removed at the
end unless `keep_probe` (with a cleanup that removes the run's changes, it goes with them).
"""

from __future__ import annotations

from meshid import checks, registration
from meshid.checks import Judgement
from meshid.conditions import live
from meshid.kube import ApiError
from meshid.manifests import DEMO_PORT, MANAGED_BY, MANAGED_BY_LABEL, PROBE
from meshid.models import CleanupPolicy
from meshid.polling import poll
from meshid.probes import Expectation, allowed, answer_text, counter_probe, denied, expect, forwarded, ready_pod
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.undo import wait_gone

DENIALS = 3  # consecutive denials of the probe (as connectivity-before-permission asks of the demo)


def run(ctx: RunContext, out: StageOutput) -> None:
    """Check the probe has its SPIRE identity, is denied, and demo-app is allowed once the permission is in force
    (MID064); then remove it
    when the run keeps its changes (cleanup never, a rollout) and `keep_probe` is off: any other cleanup removes it
    with the rest."""
    p = ctx.params
    ns = p.namespaces.probe
    try:
        _check(ctx, out, ns)
    finally:
        if p.cleanup is CleanupPolicy.NEVER and not p.keep_probe:
            _remove(ctx, out, ns)


def _check(ctx: RunContext, out: StageOutput, ns: str) -> None:
    p = ctx.params
    probe_id = p.spiffe_id(ns)
    pod = ready_pod(ctx.cluster, ns, f"app={PROBE}", "the negative probe")

    def registered() -> tuple[bool, str, str]:
        pods, _ = ctx.cluster.list("v1", "Pod", ns, label_selector=f"app={PROBE}")
        ok, seen = registration.entries_seen(p.spire.entries(ctx.cluster, p.timeouts.http_s), live(pods), probe_id)
        return ok, seen, seen

    poll(f"a SPIRE entry issuing {probe_id} to the negative probe", registered, p.timeouts.wait_s)
    with forwarded(ctx.cluster, ns, pod, DEMO_PORT, p.timeouts.http_s) as probe:
        refused = expect(probe, denied, DENIALS, p.timeouts.connectivity_s)
    out.touch("Pod", ns, pod, "probed", f"POST /api/counter x{refused.calls}: last HTTP {refused.last.status}")
    out.transient_calls += refused.transient
    with counter_probe(ctx.cluster, p.namespaces.demo, timeout_s=p.timeouts.http_s) as demo:
        served = expect(demo, allowed, 1, p.timeouts.connectivity_s)  # once the permission is in force
    out.http = refused.last
    out.check(checks.MID064, probe_id, refused, served)


@checks.evaluates(checks.MID064)
def probe_refused(probe_id: str, refused: Expectation, served: Expectation) -> Judgement:
    """MID064 from the probe's window (`DENIALS` denials in a row wanted) and demo-app's meanwhile (one success)."""
    return refused.met and served.met, (
        f"probe {probe_id}: {refused.streak}/{DENIALS} denied in a row after {refused.calls} calls (last: "
        f"{answer_text(refused.last, 160)}); demo-app meanwhile: HTTP {served.last.status} {served.last.body[:120]}")


def _remove(ctx: RunContext, out: StageOutput, ns: str) -> None:
    """Delete the probe's namespace (meshid's own: labelled managed-by meshid) and wait until it is gone."""
    found = ctx.cluster.get("v1", "Namespace", ns)
    if found is None or (found["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY:
        return
    try:
        ctx.cluster.delete("v1", "Namespace", ns)
    except ApiError as exc:
        if exc.status != 404:
            raise
    out.touch("Namespace", None, ns, "deleted", "the negative probe, removed after its check")
    wait_gone(ctx.cluster, "v1", "Namespace", ns, None, ctx.params.timeouts.cleanup_s)
    ctx.ledger.forget_namespace(ns)
