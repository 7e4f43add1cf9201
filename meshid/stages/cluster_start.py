"""cluster-start: start a throwaway cluster (sandbox, minikube, kind) or connect to an existing one."""

from __future__ import annotations

from meshid import checks
from meshid.checks import Judgement
from meshid.errors import ExternalCallError
from meshid.kube import Cluster
from meshid.ledger import CreatedCluster
from meshid.providers import ClusterHandle
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


@checks.evaluates(checks.MID002)
def api_answers(who: str, answer: str | ExternalCallError) -> Judgement:
    """MID002 for what asking `who` (the API, a context, a group of checks) got: a Kubernetes version or the error."""
    if isinstance(answer, ExternalCallError):
        return False, f"{who}: {answer}"
    return True, f"{who} answers: Kubernetes {answer}"


def run(ctx: RunContext, out: StageOutput) -> ClusterHandle:
    """Start the target's cluster (or take the existing one preflight reached) and check its API answers; return its
    handle. A cluster the provider creates is in the ledger before it is created."""
    created = CreatedCluster(ctx.params.target.provider.value, ctx.params.target.resolved_cluster)
    handle = ctx.handle or ctx.provider.start(ctx.params.timeouts.wait_s, creating=lambda: ctx.ledger.record(created))
    ctx = ctx.on(handle)
    out.touch("Cluster", None, ctx.params.target.resolved_cluster, "started" if handle.owned else "connected",
              f"provider {handle.provider}" + (f", context {handle.context}" if handle.context else ""))
    out.versions["kubernetes"] = check_api(ctx.cluster, out, "the API")
    return handle


def check_api(cluster: Cluster, out: StageOutput, who: str) -> str:
    """MID002: ask the cluster's API (`who`, for the message) its Kubernetes version, and return it."""
    version = cluster.version()
    out.check(checks.MID002, who, version)
    return version
