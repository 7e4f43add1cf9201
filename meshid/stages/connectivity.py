"""The two connectivity stages: the guide's `curl -XPOST localhost:5050/api/counter` through port-forward."""

from __future__ import annotations

from collections.abc import Callable

from meshid import checks
from meshid.checks import Judgement
from meshid.envoy_admin import inbound_handshakes, served_ids
from meshid.identity import permits
from meshid.kube import ApiError
from meshid.manifests import DEMO_PORT
from meshid.probes import Expectation, allowed, answer_text, counter_probe, denied, expect, served, serving_pod
from meshid.results import HttpExchange
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.register_spiffe_ids import check_entries
from meshid.stages.restart_workloads import IDENTITY_SERVICE
from meshid.stages.waits import polled_check

DENIAL_STREAK = 3  # consecutive denials that show identity-based mTLS is in force before the permission
CONFIRM_S = 5.0  # entries must be there already: the bound only rides out a transient error of the exec


def _probe(ctx: RunContext, out: StageOutput, want: Callable[[HttpExchange], bool], consecutive: int) -> Expectation:
    p = ctx.params
    with counter_probe(ctx.cluster, p.namespaces.demo, timeout_s=p.timeouts.http_s) as probe:
        result = expect(probe, want, consecutive, p.timeouts.connectivity_s)
        out.touch("Pod", p.namespaces.demo, probe.pod, "probed",
                  f"POST /api/counter x{result.calls}: last HTTP {result.last.status}")
    out.http = result.last
    out.transient_calls += result.transient
    return result


def _calls(result: Expectation, consecutive: int) -> str:
    return (f"{result.streak}/{consecutive} in a row after {result.calls} calls in {result.elapsed_s:.1f}s "
            f"({result.transient} transient); last")


@checks.evaluates(checks.MID060)
def denial(answer: HttpExchange, calls: str) -> Judgement:
    """MID060 for the last answer to calls made without a permission (`calls` says which): the guide's denial."""
    return denied(answer), f"{calls}: {answer_text(answer)}"


@checks.evaluates(checks.MID061)
def admission(answer: HttpExchange, calls: str, counted: bool = True) -> Judgement:
    """MID061 for the last answer to calls made with the permission (`calls` says which): the guide's success (a
    POST's counter counted; a GET only reads it, so `counted` is False for one)."""
    return (allowed if counted else served)(answer), f"{calls}: {answer_text(answer)}"


@checks.evaluates(checks.MID062)
def converged_early(elapsed_s: float, window_s: float) -> Judgement:
    """MID062: allowed within the first half of the window."""
    return elapsed_s <= window_s / 2, f"converged after {elapsed_s:.1f}s of a {window_s:.0f}s window"


@checks.evaluates(checks.MID063)
def mtls_inbound(pod: str, handshakes: int | None, grew: int | None = None) -> Judgement:
    """MID063 from kv's inbound TLS counter (None: no sidecar or no TLS stats), and, for allowed calls just made, how
    much it grew meanwhile. Its sidecar's counters start at 0 with the pod, so any handshake it counts happened since
    kv restarted; the calls may reuse a connection opened earlier (Envoy pools upstream connections), so growth is
    reported, not required."""
    if handshakes is None:
        return False, (f"kv pod {pod}: no sidecar, or no TLS stats on its inbound listener {DEMO_PORT}: the calls were "
                       "not mTLS")
    if not handshakes:
        return False, f"kv pod {pod}: no TLS handshake on its inbound listener"
    during = "" if grew is None else (f", {grew} during the allowed calls" if grew > 0 else
                                      ", none new during the allowed calls (pooled connection)")
    return True, f"kv pod {pod}: listener *_{DEMO_PORT} ssl.handshake {handshakes} since the pod started{during}"


@checks.evaluates(checks.MID065)
def serves_workload_id(pod: str, ids: list[str] | None, wanted: str) -> Judgement:
    """MID065 from the SPIFFE IDs kv's proxy serves certificates for (None: no sidecar): `wanted` among them."""
    certs = "no sidecar" if ids is None else ", ".join(ids) or "no certificate"
    if ids and wanted in ids:
        return True, f"kv pod {pod} serves: {certs}, as expected"
    return False, f"kv pod {pod} serves: {certs}; expected {wanted}"


def permitting(ctx: RunContext) -> list[str]:
    """`namespace/name` of each MeshTrafficPermission in the demo's or the control plane's namespace that already lets
    the demo workloads in (none while Kong Mesh is not installed)."""
    p = ctx.params
    workload = p.workload_id()
    found = []
    for ns in (p.namespaces.demo, p.namespaces.control_plane):
        try:
            permissions, _ = ctx.cluster.list("kuma.io/v1alpha1", "MeshTrafficPermission", ns)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return found  # no MeshTrafficPermission kind
        found += [f"{ns}/{m['metadata']['name']}" for m in permissions if permits(m, workload)]
    return found


def before_permission(ctx: RunContext, out: StageOutput) -> None:
    """Without a permission, identity-based mTLS must deny: HTTP 500 "failed to retrieve zone"."""
    found = permitting(ctx)
    if found:  # every call would be allowed: say so now instead of calling for the whole window
        out.add(checks.MID060.failed(f"not probed: MeshTrafficPermission {', '.join(found)} already lets "
                                     f"{ctx.params.workload_id()} in, so no call can be denied"))
        return
    result = _probe(ctx, out, denied, DENIAL_STREAK)
    _expected(out, checks.MID060, result, "denied: " + _calls(result, DENIAL_STREAK))


def _expected(out: StageOutput, check: checks.CheckSpec, result: Expectation, calls: str) -> None:
    """`check` for a probe window: its last answer judged once the window's streak is met; failed, with that answer,
    when the window closed first."""
    if result.met:
        out.check(check, result.last, calls)
    else:
        out.add(check.failed(check.evaluate(result.last, calls)[1]))


def after_permission(ctx: RunContext, out: StageOutput) -> None:
    """With the permission, calls must succeed (200, counter >= 1, zone "") N times in a row within the window, over
    mTLS (kv's inbound counts TLS handshakes), to pods SPIRE holds entries for."""
    p = ctx.params
    n = p.stable_successes
    kv = serving_pod(ctx.cluster, p.namespaces.demo, IDENTITY_SERVICE)
    before = _handshakes(ctx, kv)
    result = _probe(ctx, out, allowed, n)
    _expected(out, checks.MID061, result, "allowed: " + _calls(result, n))
    if result.met:
        out.check(checks.MID062, result.elapsed_s, p.timeouts.connectivity_s)
        after = _handshakes(ctx, kv)
        out.check(checks.MID063, kv, after, None if after is None else after - (before or 0))
    check_served_identity(ctx, out, kv, p.timeouts.connectivity_s if result.met else 0)
    # after success a confirmation; after a failure, whether missing registrations explain it
    check_entries(ctx, out, timeout_s=CONFIRM_S)


def check_served_identity(ctx: RunContext, out: StageOutput, pod: str, wait_s: float) -> None:
    """MID065: kv's proxy serves the SPIFFE ID the MeshIdentity gives it (after allowed calls, the proof that SPIRE's
    identity is what let them in, waited for up to `wait_s` as the control plane pushes it to each proxy on its own
    loop; after failed calls, often why)."""
    p = ctx.params
    wanted = p.workload_id()
    polled_check(out, checks.MID065, f"kv's sidecar serving {wanted}",
                 lambda: (pod, served_ids(ctx.cluster, p.namespaces.demo, pod, p.timeouts.http_s), wanted), wait_s)


def _handshakes(ctx: RunContext, pod: str) -> int | None:
    return inbound_handshakes(ctx.cluster, ctx.params.namespaces.demo, pod, DEMO_PORT, ctx.params.timeouts.http_s)

