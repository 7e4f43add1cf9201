"""cleanup: honour the cleanup policy; delete a throwaway cluster, or undo exactly what the run applied."""

from __future__ import annotations

from meshid.models import CleanupPolicy
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.undo import undo


def run(ctx: RunContext, out: StageOutput) -> None:
    """Clean up per policy; a cleanup that leaves anything behind fails the stage (and so the run)."""
    policy = ctx.params.cleanup
    keep = policy is CleanupPolicy.NEVER or (policy is CleanupPolicy.ON_SUCCESS and ctx.run_failed)
    if ctx.handle is None:
        out.check("MID070", True, "no cluster was started or reached: nothing to clean up")
    elif keep:
        out.touch("Cluster", None, ctx.params.target.resolved_cluster, "kept", f"cleanup policy {policy.value}")
        out.check("MID070", True, f"kept per cleanup policy {policy.value}; ledger in {ctx.ledger.path}")
    elif ctx.handle.owned:
        ctx.provider.delete(ctx.handle, ctx.params.timeouts.cleanup_s)
        out.touch("Cluster", None, ctx.params.target.resolved_cluster, "deleted", f"provider {ctx.handle.provider}")
        out.check("MID070", True, f"throwaway cluster {ctx.params.target.resolved_cluster} deleted")
    else:
        problems = undo(ctx.cluster, ctx.helm, ctx.ledger, ctx.params.timeouts.cleanup_s, out)
        out.check("MID070", not problems, "; ".join(problems) or
                  f"removed everything the run created ({len(out.touched)} changes undone)")
