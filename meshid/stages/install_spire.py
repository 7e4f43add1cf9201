"""install-spire: the SPIRE CRDs and SPIRE with the run's trust domain, then wait for every SPIRE component."""

from __future__ import annotations

from meshid.conditions import crds_established, daemonset_ready, named, pods_ready
from meshid.manifests import spire_values
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import checked_wait

CRDS_RELEASE = "spire-crds"
SERVER_POD = "spire-server-0"
NODE_DAEMONSETS = ("spire-agent", "spire-spiffe-csi-driver")
CSI_DRIVER = "csi.spiffe.io"
SPIRE_GROUP = "spire.spiffe.io"
SPIRE_CRDS = 3  # ClusterSPIFFEID, ClusterStaticEntry, ClusterFederatedTrustDomain


def run(ctx: RunContext, out: StageOutput) -> None:
    """Install spire-crds and spire; the server, the agents and the CSI driver must be ready."""
    p = ctx.params
    ns = p.namespaces.spire
    wait_s = p.timeouts.wait_s
    ctx.install(p.charts.spire_crds, CRDS_RELEASE, ns, [], out)
    ctx.cluster.wait(f"{SPIRE_GROUP} CRDs Established", "apiextensions.k8s.io/v1", "CustomResourceDefinition",
                     crds_established(SPIRE_GROUP, SPIRE_CRDS), wait_s)  # before the spire chart creates its CRs
    ctx.install(p.charts.spire, p.namespaces.spire_release, ns, spire_values(p), out)
    checked_wait(out, "MID020", lambda: ctx.cluster.wait(
        f"pod {ns}/{SERVER_POD} Ready", "v1", "Pod", pods_ready(), wait_s, namespace=ns,
        field_selector=f"metadata.name={SERVER_POD}"), lambda _: f"{SERVER_POD} Ready (trust domain "
                                                                   f"{p.resolved_spire_trust_domain})")
    for ds in NODE_DAEMONSETS:
        checked_wait(out, "MID021", lambda ds=ds: ctx.cluster.wait(
            f"daemonset {ns}/{ds} ready on every node", "apps/v1", "DaemonSet", named(ds, daemonset_ready), wait_s,
            namespace=ns), lambda _, ds=ds: f"daemonset {ds} ready on every node")
    driver = ctx.cluster.get("storage.k8s.io/v1", "CSIDriver", CSI_DRIVER)
    out.check("MID021", driver is not None, f"CSIDriver {CSI_DRIVER} " + ("present" if driver else "missing"))
