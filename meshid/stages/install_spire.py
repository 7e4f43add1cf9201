"""install-spire: the SPIRE CRDs and SPIRE with the run's trust domain, then wait for every SPIRE component.

Every name comes from the release, as the chart derives it (meshid.spire). The server's datastore claim needs a
default StorageClass: checked before the install, so a cluster without one fails in seconds (MID023), not at the end
of the server's wait.
"""

from __future__ import annotations

from meshid import checks
from meshid.conditions import crds_established, daemonset_ready, named, pods_ready
from meshid.manifests import spire_values
from meshid.spire import CSI_DRIVER
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait
from meshid.storage import datastore_claimable

CRDS_RELEASE = "spire-crds"
SPIRE_GROUP = "spire.spiffe.io"
SPIRE_CRDS = 3  # ClusterSPIFFEID, ClusterStaticEntry, ClusterFederatedTrustDomain


def run(ctx: RunContext, out: StageOutput) -> None:
    """Install spire-crds and spire; the server, the agents and the CSI driver must be ready."""
    p = ctx.params
    spire = p.spire
    wait_s = p.timeouts.wait_s
    ok, seen = datastore_claimable(ctx.cluster, spire, p.spire_persistence)
    if not out.check(checks.MID023, ok, seen):
        return
    ctx.install(p.charts.spire_crds, CRDS_RELEASE, spire.namespace, [], out, crd_group=SPIRE_GROUP)
    ctx.cluster.wait(f"{SPIRE_GROUP} CRDs Established", "apiextensions.k8s.io/v1", "CustomResourceDefinition",
                     crds_established(SPIRE_GROUP, SPIRE_CRDS), wait_s)  # before the spire chart creates its CRs
    claims = (spire.data_claim,) if p.spire_persistence == "pvc" else ()
    ctx.install(p.charts.spire, spire.release, spire.namespace, spire_values(p), out, claims=claims)
    checked_wait(out, checks.MID020, lambda: ctx.cluster.wait(
        f"pod {spire.namespace}/{spire.server_pod} Ready", "v1", "Pod", pods_ready(), wait_s,
        namespace=spire.namespace, field_selector=f"metadata.name={spire.server_pod}"),
        lambda _: f"{spire.server_pod} Ready (trust domain {p.resolved_spire_trust_domain})")
    for ds in spire.node_daemonsets:
        checked_wait(out, checks.MID021, lambda ds=ds: ctx.cluster.wait(
            f"daemonset {spire.namespace}/{ds} ready on every node", "apps/v1", "DaemonSet",
            named(ds, daemonset_ready), wait_s, namespace=spire.namespace),
            lambda _, ds=ds: f"daemonset {ds} ready on every node")
    driver = ctx.cluster.get("storage.k8s.io/v1", "CSIDriver", CSI_DRIVER)
    out.check(checks.MID021, driver is not None, f"CSIDriver {CSI_DRIVER} " + ("present" if driver else "missing"))
