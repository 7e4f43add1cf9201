"""`meshid recover` and `meshid runs`: the runs under a runs folder, and the cleanup of those that never finished
(`meshid.recovery`)."""

from __future__ import annotations

import argparse

from cli.exits import EXIT_FAILED, EXIT_OK
from cli.tables import print_rows


def _recover(args: argparse.Namespace) -> int:
    from meshid import recovery
    from meshid.settings import load_settings

    settings = load_settings(**({"runs_dir": args.runs_dir} if args.runs_dir else {}))
    chosen = recovery.select(settings.runs_dir, args.run)
    if not chosen:
        print(f"nothing to recover: no unfinished run whose process is gone under {settings.runs_dir}")
        return EXIT_OK
    failed = False
    for ledger in chosen:
        done = recovery.recover(ledger, settings, dry_run=args.dry_run, include_kept=args.run is not None)
        for line in done.lines(settings.runs_dir):
            print(line)
        failed |= bool(done.problems) or done.busy
    return EXIT_FAILED if failed else EXIT_OK


def _runs(args: argparse.Namespace) -> int:
    from meshid import recovery
    from meshid.settings import load_settings

    runs_dir = load_settings(**({"runs_dir": args.runs_dir} if args.runs_dir else {})).runs_dir
    rows = [{"run_id": r.run_id, "target": r.target, "provider": r.provider, "cluster": r.cluster,
             "state": r.state().value, "stage": r.stage, "started_at": r.started_at.isoformat(timespec="seconds"),
             "cleanup": r.summary} for r in (ledger.run for ledger in recovery.runs(runs_dir))]
    print_rows(rows, args.output, f"no runs under {runs_dir}", ("run_id", "state", "provider", "stage", "cleanup"))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`meshid recover` and `meshid runs`, with their flags."""
    recover = sub.add_parser("recover", help="clean up what runs that never finished left (their process is gone)")
    recover.add_argument("--run", metavar="RUN_ID", help="only this run (also one kept on purpose)")
    recover.add_argument("--dry-run", action="store_true", help="say what would be undone, change nothing")
    recover.add_argument("--runs-dir", help="where the runs are (default: MESHID_RUNS_DIR, else ./runs)")
    recover.set_defaults(func=_recover)
    runs = sub.add_parser("runs", help="list runs and their state (passed, failed, interrupted, kept, "
                                       "unrecovered, ...)")
    runs.add_argument("--runs-dir", help="where the runs are (default: MESHID_RUNS_DIR, else ./runs)")
    runs.add_argument("-o", "--output", choices=["table", "json"], default="table")
    runs.set_defaults(func=_runs)
