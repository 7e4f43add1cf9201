"""cluster-start: start a throwaway cluster (sandbox, minikube, kind) or connect to an existing one."""

from __future__ import annotations

from meshid import checks
from meshid.ledger import CreatedCluster
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


def run(ctx: RunContext, out: StageOutput) -> None:
    """Start the target's cluster and check its API answers; a cluster the provider creates is in the ledger
    before it is created."""
    created = CreatedCluster(ctx.params.target.provider.value, ctx.params.target.resolved_cluster)
    handle = ctx.handle or ctx.provider.start(ctx.params.timeouts.wait_s, creating=lambda: ctx.ledger.record(created))
    ctx.handle = handle
    out.touch("Cluster", None, ctx.params.target.resolved_cluster, "started" if handle.owned else "connected",
              f"provider {handle.provider}" + (f", context {handle.context}" if handle.context else ""))
    version = ctx.cluster.version()
    ctx.versions["kubernetes"] = version
    out.check(checks.MID002, True, f"the API answers: Kubernetes {version}")
