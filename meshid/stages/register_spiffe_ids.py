"""register-spiffe-ids: apply the guide's ClusterSPIFFEID and check SPIRE actually reconciled a registration.

SPIRE's controller only reconciles ClusterSPIFFEIDs whose className is its class (`<spire ns>-<release>`), so the
guide's CR, which has none, is ignored; the chart's fallback CR issues the IDs. This stage says which CR does.
"""

from __future__ import annotations

from meshid.manifests import cluster_spiffe_id
from meshid.models import DEMO_SERVICE_ACCOUNT, RegistrationClass
from meshid.spiffe import spire_template_id
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

API = "spire.spiffe.io/v1alpha1"
KIND = "ClusterSPIFFEID"


def _stats(cr: dict) -> dict:
    return cr.get("status", {}).get("stats", {}) or {}


def _issuing(crs: list[dict], guide_name: str, class_name: str, chart_class: bool) -> dict | None:
    if chart_class:
        return next((c for c in crs if c["metadata"]["name"] == guide_name), None)
    return next((c for c in crs if c.get("spec", {}).get("className") == class_name
                 and c.get("spec", {}).get("fallback")), None)


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the registration and wait until the CR that issues the demo's IDs has selected its pods."""
    p = ctx.params
    class_name = f"{p.namespaces.spire}-{p.namespaces.spire_release}"
    chart_class = p.registration is RegistrationClass.CHART_CLASS
    guide = ctx.apply(cluster_spiffe_id(p), out)
    guide_name = guide["metadata"]["name"]
    expected = spire_template_id(p.resolved_spire_trust_domain, p.namespaces.demo, DEMO_SERVICE_ACCOUNT)
    out.touch("SpiffeID", p.namespaces.demo, expected, "expected", "SVID SPIRE should issue to the demo pods")

    def reconciled(crs: list[dict]) -> tuple[bool, str]:
        cr = _issuing(crs, guide_name, class_name, chart_class)
        if cr is None:
            return False, f"no ClusterSPIFFEID with className {class_name}" + ("" if chart_class else " and fallback")
        stats = _stats(cr)
        seen = f"{cr['metadata']['name']}: {stats or 'no stats yet'}"
        return stats.get("podsSelected", 0) > 0 and not stats.get("entryFailures", 0) and not stats.get(
            "podEntryRenderFailures", 0), seen

    crs = checked_wait(out, "MID030", lambda: ctx.cluster.wait(
        f"a reconciled ClusterSPIFFEID selecting the demo pods (class {class_name})", API, KIND, reconciled,
        p.timeouts.wait_s), lambda found: reconciled(found)[1])
    if crs is None or chart_class:
        return
    issuing = _issuing(crs, guide_name, class_name, False)
    guide_now = next(c for c in crs if c["metadata"]["name"] == guide_name)
    ignored = not guide_now.get("spec", {}).get("className") and not _stats(guide_now).get("podsSelected")
    out.check("MID031", not ignored, (
        f"ClusterSPIFFEID {guide_name} has no className, so SPIRE's controller (class {class_name}, watchClassless "
        f"false) ignores it and its stats stay empty; the demo's IDs come from {issuing['metadata']['name']} "
        f"(podsSelected {_stats(issuing).get('podsSelected')})") if ignored else
        f"ClusterSPIFFEID {guide_name} is reconciled")
