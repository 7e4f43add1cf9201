"""install-spire: the SPIRE CRDs and SPIRE with the run's trust domain, then wait for every SPIRE component.

Every name comes from the release, as the chart derives it (meshid.spire). The server's datastore claim needs a
default StorageClass: checked before the install, so a cluster without one fails in seconds (MID023), not at the end
of the server's wait.
"""

from __future__ import annotations

from contextlib import suppress

from meshid import checks, storage  # noqa: F401 - storage: MID023's evaluator
from meshid.checks import Judgement
from meshid.conditions import Obj, crds_established, daemonset_ready, named, pods_ready
from meshid.errors import WaitTimeout
from meshid.kube import Cluster
from meshid.manifests import spire_values
from meshid.models import GuideParams
from meshid.results import CheckResult
from meshid.spire import CSI_DRIVER, SpireRelease
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput
from meshid.stages.waits import waited_check

CRDS_RELEASE = "spire-crds"
SPIRE_GROUP = "spire.spiffe.io"
SPIRE_CRDS = 3  # ClusterSPIFFEID, ClusterStaticEntry, ClusterFederatedTrustDomain


def run(ctx: RunContext, out: StageOutput) -> None:
    """Install spire-crds and spire; the server, the agents and the CSI driver must be ready."""
    p = ctx.params
    spire = p.spire
    wait_s = p.timeouts.wait_s
    if not check_datastore(ctx.cluster, out, p):
        return
    ctx.install(p.charts.spire_crds, CRDS_RELEASE, spire.namespace, [], out, crd_group=SPIRE_GROUP)
    ctx.cluster.wait(f"{SPIRE_GROUP} CRDs Established", "apiextensions.k8s.io/v1", "CustomResourceDefinition",
                     crds_established(SPIRE_GROUP, SPIRE_CRDS), wait_s)  # before the spire chart creates its CRs
    claims = (spire.data_claim,) if p.spire_persistence == "pvc" else ()
    ctx.install(p.charts.spire, spire.release, spire.namespace, spire_values(p), out, claims=claims)
    waited_check(out, checks.MID020, lambda: ctx.cluster.wait(
        f"pod {spire.namespace}/{spire.server_pod} Ready", "v1", "Pod",
        lambda found: server_ready(found, spire, p.resolved_spire_trust_domain), wait_s,
        namespace=spire.namespace, field_selector=f"metadata.name={spire.server_pod}"),
        spire, p.resolved_spire_trust_domain)
    for ds in spire.node_daemonsets:
        with suppress(WaitTimeout):  # node_components says what a DaemonSet that never got ready shows
            ctx.cluster.wait(f"daemonset {spire.namespace}/{ds} ready on every node", "apps/v1", "DaemonSet",
                             named(ds, daemonset_ready), wait_s, namespace=spire.namespace)
    for result in node_components(ctx.cluster, spire):
        out.add(result)


def check_datastore(cluster: Cluster, out: StageOutput, p: GuideParams) -> bool:
    """MID023 (before the install, and in preflight on an existing cluster): SPIRE's server can get its datastore
    volume."""
    return out.check(checks.MID023, cluster, p.spire, p.spire_persistence)


@checks.evaluates(checks.MID020)
def server_ready(pods: list[Obj], spire: SpireRelease, trust_domain: str) -> Judgement:
    """MID020 for the SPIRE server pod (a list of it, empty when it is missing): Running and Ready."""
    ok, seen = pods_ready()(pods)
    return ok, f"{spire.server_pod} Ready (trust domain {trust_domain})" if ok else f"{spire.server_pod}: {seen}"


@checks.evaluates(checks.MID021)
def node_component(kind: str, name: str, obj: Obj | None) -> Judgement:
    """MID021 for one of SPIRE's node components (None when it is missing): a DaemonSet ready on every node, or the
    CSIDriver registered."""
    if kind == "CSIDriver":
        return obj is not None, f"CSIDriver {name} " + ("present" if obj else "missing")
    ready, seen = daemonset_ready(obj) if obj else (False, "missing")
    return ready, f"daemonset {name}: {seen}"


def node_components(cluster: Cluster, spire: SpireRelease) -> list[CheckResult]:
    """MID021 as the cluster shows it now: SPIRE's node DaemonSets (agent, CSI driver) ready on every node, and the
    CSIDriver `csi.spiffe.io` registered."""
    found = [("DaemonSet", name, cluster.get("apps/v1", "DaemonSet", name, spire.namespace))
             for name in spire.node_daemonsets]
    found.append(("CSIDriver", CSI_DRIVER, cluster.get("storage.k8s.io/v1", "CSIDriver", CSI_DRIVER)))
    return [checks.MID021.result(*component) for component in found]
