"""rollback: undo exactly what a failed rollout run applied (its ledger) and check nothing of it is left."""

from __future__ import annotations

from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput
from meshid.undo import undo


def run(ctx: RunContext, out: StageOutput) -> None:
    """Undo exactly what the run applied (its ledger) and check nothing of it is left (MID081)."""
    problems = undo(ctx.cluster, ctx.helm, ctx.ledger, ctx.params.timeouts.cleanup_s, out)
    out.check("MID081", not problems, "; ".join(problems) or f"undid the {len(out.touched)} changes run "
                                                            f"{ctx.run_id} applied")
