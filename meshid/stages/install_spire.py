"""install-spire: the SPIRE CRDs and SPIRE with the run's trust domain, then wait for every SPIRE component.

Every name comes from the release, as the chart derives it (meshid.spire). The server's datastore claim needs a
default StorageClass: checked before the install, so a cluster without one fails in seconds (MID023), not at the end
of the server's wait.
"""

from __future__ import annotations

from contextlib import suppress

from meshid import checks
from meshid.conditions import crds_established, daemonset_ready, named, pods_ready
from meshid.errors import WaitTimeout
from meshid.kube import Cluster
from meshid.manifests import spire_values
from meshid.results import CheckResult
from meshid.spire import CSI_DRIVER, SpireRelease
from meshid.stages.run_context import RunContext
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
        with suppress(WaitTimeout):  # node_components says what a DaemonSet that never got ready shows
            ctx.cluster.wait(f"daemonset {spire.namespace}/{ds} ready on every node", "apps/v1", "DaemonSet",
                             named(ds, daemonset_ready), wait_s, namespace=spire.namespace)
    for result in node_components(ctx.cluster, spire):
        out.add(result)


def node_components(cluster: Cluster, spire: SpireRelease) -> list[CheckResult]:
    """MID021 as the cluster shows it now: SPIRE's node DaemonSets (agent, CSI driver) ready on every node, and the
    CSIDriver `csi.spiffe.io` registered."""
    results = []
    for name in spire.node_daemonsets:
        ds = cluster.get("apps/v1", "DaemonSet", name, spire.namespace)
        ready, seen = daemonset_ready(ds) if ds else (False, "missing")
        results.append(checks.result(checks.MID021, ready, f"daemonset {name}: {seen}"))
    driver = cluster.get("storage.k8s.io/v1", "CSIDriver", CSI_DRIVER)
    return results + [checks.result(checks.MID021, driver is not None,
                                    f"CSIDriver {CSI_DRIVER} " + ("present" if driver else "missing"))]
