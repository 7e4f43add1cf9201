"""Which ClusterSPIFFEID issues the demo's SPIFFE IDs, whether SPIRE reconciled it, and whether SPIRE holds a
registration entry for each demo pod.

SPIRE's controller reconciles only ClusterSPIFFEIDs whose className is its class (`<spire ns>-<release>`); with
watchClassless false, the guide's CR (no className) is ignored and the chart's fallback CR issues the IDs. A CR's
`status.stats` proves only that the controller looked at it: the fallback CR selects the pods of every namespace, and
a pod not yet on a node counts as a render failure ("node ... not found in cache") wherever it is. What proves the demo
got its identities is SPIRE's own registration entries (spire-controller-manager gives each pod an entry with the
selector `k8s:pod-uid:<uid>`, pkg/spireentry/reconciler.go).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshid import checks
from meshid.checks import Judgement
from meshid.conditions import live
from meshid.manifests import CLUSTER_SPIFFE_ID as GUIDE_CR
from meshid.manifests import DEMO_WORKLOADS
from meshid.models import GuideParams
from meshid.spire import Entry

if TYPE_CHECKING:
    from meshid.kube import Cluster

Obj = dict[str, Any]
POD_UID_SELECTOR = "k8s:pod-uid:"


def stats(cr: Obj) -> dict[str, int]:
    """`status.stats` of a ClusterSPIFFEID ({} before SPIRE reconciled it)."""
    return cr.get("status", {}).get("stats", {}) or {}


def issuing(crs: list[Obj], params: GuideParams) -> Obj | None:
    """The CR that issues the demo's IDs: the guide's when it carries the controller's class, else the fallback."""
    cls = params.spire.controller_class
    guide = next((c for c in crs if c["metadata"]["name"] == GUIDE_CR), None)
    if guide is not None and guide.get("spec", {}).get("className") == cls:
        return guide
    return next((c for c in crs if c.get("spec", {}).get("className") == cls and c.get("spec", {}).get("fallback")),
                None)


@checks.evaluates(checks.MID030)
def reconciled(crs: list[Obj], params: GuideParams) -> Judgement:
    """MID030: whether SPIRE reconciled the issuing CR (it has stats and selected pods), and what it shows. Render failures
    are reported, not judged: pods pending anywhere in the cluster count there; the entries check judges the demo."""
    cr = issuing(crs, params)
    if cr is None:
        return False, f"no ClusterSPIFFEID with className {params.spire.controller_class} (the guide's or a fallback)"
    s = stats(cr)
    return s.get("podsSelected", 0) > 0, f"{cr['metadata']['name']}: {s or 'no stats yet'}"


def ignored_guide_cr(crs: list[Obj], params: GuideParams) -> str | None:
    """Why the guide's CR is ignored by SPIRE, or None when it is not (or is absent)."""
    guide = next((c for c in crs if c["metadata"]["name"] == GUIDE_CR), None)
    if guide is None or guide.get("spec", {}).get("className") or stats(guide).get("podsSelected"):
        return None
    source = issuing(crs, params)
    by = (f"the demo's IDs come from {source['metadata']['name']} (podsSelected {stats(source).get('podsSelected')})"
          if source else "no other CR issues them")
    return (f"ClusterSPIFFEID {GUIDE_CR} has no className, so SPIRE's controller (class "
            f"{params.spire.controller_class}, watchClassless false) ignores it and its stats stay empty; {by}")


@checks.evaluates(checks.MID031)
def guide_cr_counted(crs: list[Obj], params: GuideParams) -> Judgement:
    """MID031: SPIRE does not ignore the guide's ClusterSPIFFEID (it has the controller's class, or it is absent)."""
    ignored = ignored_guide_cr(crs, params)
    present = any(c["metadata"]["name"] == GUIDE_CR for c in crs)
    return ignored is None, ignored or ("the guide's ClusterSPIFFEID is reconciled" if present
                                        else "no ignored ClusterSPIFFEID")


def unregistered(entries: list[Entry], pods: list[Obj], spiffe_id: str) -> list[str]:
    """Names of the pods SPIRE holds no entry for that issues `spiffe_id` to that very pod (by its UID)."""
    registered = {selector.removeprefix(POD_UID_SELECTOR) for e in entries if e.spiffe_id == spiffe_id
                  for selector in e.selectors if selector.startswith(POD_UID_SELECTOR)}
    return [p["metadata"]["name"] for p in pods if p["metadata"].get("uid") not in registered]


def entries_seen(entries: list[Entry], pods: list[Obj], spiffe_id: str) -> tuple[bool, str]:
    """Whether every pod has an entry for `spiffe_id`, and what SPIRE holds (for messages and waits)."""
    missing = unregistered(entries, pods, spiffe_id)
    ids = sorted({e.spiffe_id for e in entries})
    if not pods:
        return False, "no demo pods to check"
    if missing:
        return False, (f"no entry issuing {spiffe_id} to pod(s) {', '.join(missing)}; SPIRE holds {len(entries)} "
                       f"entries for {', '.join(ids[:6]) or 'no SPIFFE ID'}{' ...' if len(ids) > 6 else ''}")
    return True, f"SPIRE holds an entry issuing {spiffe_id} to each of {', '.join(p['metadata']['name'] for p in pods)}"


@checks.evaluates(checks.MID032)
def demo_entries(cluster: Cluster, params: GuideParams, timeout_s: float) -> Judgement:
    """MID032: whether SPIRE holds an entry issuing the demo workloads' SPIFFE ID to each of their running pods (read with
    the server's own CLI), and what it holds."""
    selector = f"app in ({','.join(DEMO_WORKLOADS)})"
    pods, _ = cluster.list("v1", "Pod", params.namespaces.demo, label_selector=selector)
    scheduled = [p for p in live(pods) if p.get("spec", {}).get("nodeName")]
    return entries_seen(params.spire.entries(cluster, timeout_s), scheduled, params.workload_id())
