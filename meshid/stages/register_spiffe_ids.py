"""register-spiffe-ids: apply the guide's ClusterSPIFFEID and check SPIRE actually reconciled a registration.

The guide's CR, which has no className, is ignored by SPIRE (see meshid.registration); this stage says which CR
does issue the IDs, as warning MID031, or applies the CR with the chart's class (registration=chart-class).
"""

from __future__ import annotations

from meshid import registration
from meshid.manifests import cluster_spiffe_id
from meshid.models import DEMO_SERVICE_ACCOUNT
from meshid.spiffe import spire_template_id
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

API = "spire.spiffe.io/v1alpha1"
KIND = "ClusterSPIFFEID"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the registration and wait until the CR that issues the demo's IDs has selected its pods."""
    p = ctx.params
    ctx.apply(cluster_spiffe_id(p), out)
    expected = spire_template_id(p.resolved_spire_trust_domain, p.namespaces.demo, DEMO_SERVICE_ACCOUNT)
    out.touch("SpiffeID", p.namespaces.demo, expected, "expected", "SVID SPIRE should issue to the demo pods")
    crs = checked_wait(out, "MID030", lambda: ctx.cluster.wait(
        f"a reconciled ClusterSPIFFEID selecting the demo pods (class {registration.controller_class(p)})", API, KIND,
        lambda found: registration.reconciled(found, p), p.timeouts.wait_s),
        lambda found: registration.reconciled(found, p)[1])
    if crs is not None:
        ignored = registration.ignored_guide_cr(crs, p)
        out.check("MID031", ignored is None, ignored or "the guide's ClusterSPIFFEID is reconciled")
