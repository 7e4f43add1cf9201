"""cleanup: honour the cleanup policy; delete a throwaway cluster, or undo exactly what the run applied
(`meshid.recovery.clean_up`, the path every cleanup takes), and mark the run's ledger finished."""

from __future__ import annotations

from meshid import checks, interrupt, recovery
from meshid.models import CleanupPolicy
from meshid.results import Outcome
from meshid.runrecord import Cleanup
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


def run(ctx: RunContext, out: StageOutput) -> None:
    """Clean up per policy, after the run's outcome is in its ledger (an interrupted run counts as unfinished, not
    failed: `on-success` cleans it up too); a cleanup that leaves anything behind fails the stage (and so the run).
    Only a second signal stops it."""
    policy = ctx.params.cleanup
    keep = policy is CleanupPolicy.NEVER or (policy is CleanupPolicy.ON_SUCCESS
                                             and ctx.ledger.run.outcome == Outcome.FAILED.value)
    if ctx.handle is None and not ctx.ledger.entries:
        out.check(checks.MID070, [], "no cluster was started or reached: nothing to clean up")
        recovery.finish(ctx.ledger, Cleanup.DONE, "run", "nothing to clean up")
    elif keep:
        line = (f"kept per cleanup policy {policy.value}; ledger in {ctx.ledger.path}; "
                f"`{recovery.recover_command(ctx.run_id, ctx.settings.runs_dir)}` undoes it")
        out.touch("Cluster", None, ctx.params.target.resolved_cluster, "kept", f"cleanup policy {policy.value}")
        out.check(checks.MID070, [], line)
        recovery.finish(ctx.ledger, Cleanup.KEPT, "run", line)
    else:
        with interrupt.shielded():
            try:
                problems = recovery.clean_up(ctx, out)
            except interrupt.Interrupted:
                recovery.finish(ctx.ledger, Cleanup.INCOMPLETE, "run", "cleanup skipped by a second signal: finish "
                                f"it with `{recovery.recover_command(ctx.run_id, ctx.settings.runs_dir)}`")
                raise
        out.check(checks.MID070, problems, f"removed everything the run created ({recovery.summary(out.touched)})")
        recovery.finish(ctx.ledger, Cleanup.INCOMPLETE if problems else Cleanup.DONE, "run",
                        recovery.summary(out.touched, problems))
