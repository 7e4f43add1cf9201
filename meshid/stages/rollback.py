"""rollback: undo exactly what a failed or interrupted rollout run applied (its ledger, through
`meshid.recovery.clean_up` like every cleanup) and check nothing of it is left."""

from __future__ import annotations

from meshid import checks, interrupt, recovery
from meshid.runrecord import Cleanup
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


def run(ctx: RunContext, out: StageOutput) -> None:
    """Undo exactly what the run applied (its ledger) and check nothing of it is left (MID081); only a second signal
    stops it."""
    with interrupt.shielded():
        problems = recovery.clean_up(ctx, out)
    out.check(checks.MID081, problems, f"undid the {len(out.touched)} changes run {ctx.run_id} applied")
    recovery.finish(ctx.ledger, Cleanup.INCOMPLETE if problems else Cleanup.DONE, "rollback",
                    recovery.summary(out.touched, problems))
