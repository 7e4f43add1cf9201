"""cluster-start: start a throwaway cluster (sandbox, minikube, kind) or connect to an existing one."""

from __future__ import annotations

from meshid import checks
from meshid.ledger import CreatedCluster
from meshid.providers import ClusterHandle
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


def run(ctx: RunContext, out: StageOutput) -> ClusterHandle:
    """Start the target's cluster (or take the existing one preflight reached) and check its API answers; return its
    handle. A cluster the provider creates is in the ledger before it is created."""
    created = CreatedCluster(ctx.params.target.provider.value, ctx.params.target.resolved_cluster)
    handle = ctx.handle or ctx.provider.start(ctx.params.timeouts.wait_s, creating=lambda: ctx.ledger.record(created))
    ctx = ctx.on(handle)
    out.touch("Cluster", None, ctx.params.target.resolved_cluster, "started" if handle.owned else "connected",
              f"provider {handle.provider}" + (f", context {handle.context}" if handle.context else ""))
    version = ctx.cluster.version()
    out.versions["kubernetes"] = version
    out.check(checks.MID002, True, f"the API answers: Kubernetes {version}")
    return handle
