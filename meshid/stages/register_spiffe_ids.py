"""register-spiffe-ids: apply the guide's ClusterSPIFFEID, check SPIRE reconciled the CR that issues the demo's IDs,
and prove it from SPIRE's own registration entries.

The guide's CR, which has no className, is ignored by SPIRE (see meshid.registration); this stage says which CR
does issue the IDs, as warning MID031, or applies the CR with the chart's class (registration=chart-class).
"""

from __future__ import annotations

from meshid import checks, registration
from meshid.manifests import cluster_spiffe_id
from meshid.models import DEMO_SERVICE_ACCOUNT
from meshid.spiffe import spire_template_id
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import polled_check, waited_check

API = "spire.spiffe.io/v1alpha1"
KIND = "ClusterSPIFFEID"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the registration, wait until the CR that issues the demo's IDs is reconciled, then until SPIRE holds an
    entry for every demo pod."""
    p = ctx.params
    ctx.apply(cluster_spiffe_id(p), out)
    expected = spire_template_id(p.resolved_spire_trust_domain, p.namespaces.demo, DEMO_SERVICE_ACCOUNT)
    out.touch("SpiffeID", p.namespaces.demo, expected, "expected", "SVID SPIRE should issue to the demo pods")
    crs = waited_check(out, checks.MID030, lambda: ctx.cluster.wait(
        f"a reconciled ClusterSPIFFEID selecting the demo pods (class {p.spire.controller_class})", API, KIND,
        lambda found: registration.reconciled(found, p), p.timeouts.wait_s), p)
    if crs is None:
        return
    out.check(checks.MID031, crs, p)
    check_entries(ctx, out, p.timeouts.wait_s)


def check_entries(ctx: RunContext, out: StageOutput, timeout_s: float) -> bool:
    """MID032: SPIRE holds an entry issuing the demo's SPIFFE ID to each demo pod, waiting up to `timeout_s`."""
    p = ctx.params
    return polled_check(out, checks.MID032, f"SPIRE entries issuing {p.workload_id()} to every demo pod "
                        f"({p.spire.server_pod}: spire-server entry show)",
                        lambda: (ctx.cluster, p, p.timeouts.http_s), timeout_s)
