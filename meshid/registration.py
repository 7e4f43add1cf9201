"""Which ClusterSPIFFEID issues the demo's SPIFFE IDs, and whether SPIRE reconciled it (pure functions).

SPIRE's controller reconciles only ClusterSPIFFEIDs whose className is its class (`<spire ns>-<release>`); with
watchClassless false, the guide's CR (no className) is ignored and the chart's fallback CR issues the IDs.
"""

from __future__ import annotations

from typing import Any

from meshid.manifests import CLUSTER_SPIFFE_ID as GUIDE_CR
from meshid.models import GuideParams

Obj = dict[str, Any]


def controller_class(params: GuideParams) -> str:
    """The SPIRE controller's class name, as the spire chart sets it."""
    return f"{params.namespaces.spire}-{params.namespaces.spire_release}"


def stats(cr: Obj) -> dict[str, int]:
    """`status.stats` of a ClusterSPIFFEID ({} before SPIRE reconciled it)."""
    return cr.get("status", {}).get("stats", {}) or {}


def issuing(crs: list[Obj], params: GuideParams) -> Obj | None:
    """The CR that issues the demo's IDs: the guide's when it carries the controller's class, else the fallback."""
    cls = controller_class(params)
    guide = next((c for c in crs if c["metadata"]["name"] == GUIDE_CR), None)
    if guide is not None and guide.get("spec", {}).get("className") == cls:
        return guide
    return next((c for c in crs if c.get("spec", {}).get("className") == cls and c.get("spec", {}).get("fallback")),
                None)


def reconciled(crs: list[Obj], params: GuideParams) -> tuple[bool, str]:
    """Whether the issuing CR selected pods without failures, and what it shows."""
    cr = issuing(crs, params)
    if cr is None:
        return False, f"no ClusterSPIFFEID with className {controller_class(params)} (the guide's or a fallback)"
    s = stats(cr)
    ok = s.get("podsSelected", 0) > 0 and not s.get("entryFailures", 0) and not s.get("podEntryRenderFailures", 0)
    return ok, f"{cr['metadata']['name']}: {s or 'no stats yet'}"


def ignored_guide_cr(crs: list[Obj], params: GuideParams) -> str | None:
    """Why the guide's CR is ignored by SPIRE (MID031), or None when it is not (or is absent)."""
    guide = next((c for c in crs if c["metadata"]["name"] == GUIDE_CR), None)
    if guide is None or guide.get("spec", {}).get("className") or stats(guide).get("podsSelected"):
        return None
    source = issuing(crs, params)
    by = (f"the demo's IDs come from {source['metadata']['name']} (podsSelected {stats(source).get('podsSelected')})"
          if source else "no other CR issues them")
    return (f"ClusterSPIFFEID {GUIDE_CR} has no className, so SPIRE's controller (class {controller_class(params)}, "
            f"watchClassless false) ignores it and its stats stay empty; {by}")
