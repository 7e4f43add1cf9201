"""`meshid fleet`: the guide over clusters x trust domains as a Prefect flow (`flows.fleet`, imported when the fleet
starts)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cli.exits import EXIT_FAILED, EXIT_OK
from cli.flow_start import background_server, cleanup_line, interrupted_exit, until_interrupted
from meshid import interrupt
from meshid.collector import collector_paused


def _fleet(args: argparse.Namespace) -> int:
    state = None
    with until_interrupted():
        with collector_paused():
            from meshid.fleet.clusters import check_kubeconfigs
            from meshid.fleet.rollout_state import RolloutState
            from meshid.fleet.spec import Dispatch, load_fleet_file
            from meshid.settings import load_settings

            # bad input stops here, before any cluster is touched
            spec = load_fleet_file(args.fleet_file, args.mode, args.dispatch)
            if spec.dispatch is Dispatch.LOCAL:
                check_kubeconfigs(spec)  # with workers, the kubeconfigs are on the workers and read there
            runs_dir = load_settings().runs_dir
            if spec.resume_from:
                RolloutState.load(runs_dir, spec.resume_from)
            # workers poll the server PREFECT_API_URL names; a local fleet runs on meshid's background server
            server = background_server() if spec.dispatch is Dispatch.LOCAL else None
            from flows.dispatch import check_workers
            from flows.fleet import fleet
            from flows.foreground import foreground

            check_workers(spec)

        json_path = args.json_report or str(Path(tempfile.mkdtemp(prefix="meshid-fleet-")) / "fleet.json")
        with foreground(server):
            state = fleet(spec=spec, json_report=json_path, junit_report=args.junit, return_state=True)
    if state is None or not Path(json_path).is_file():
        if interrupt.received():
            return interrupted_exit("the fleet run")
        print(f"meshid: the fleet run crashed before it wrote a report: {state.message}", file=sys.stderr)
        return EXIT_FAILED
    from meshid.terminal import print_table

    report = json.loads(Path(json_path).read_text())
    print_table(["TARGET", "TRUST DOMAIN", "OUTCOME", "SECONDS", "FAILED STAGE", "WORKER", "CODES"],
                [[r["target"], r["trust_domain"], r["outcome"], round(r["duration_s"], 1), r["failed_stage"] or "",
                  r["worker"] or "-", ",".join(r["codes"])] for r in report["results"]], sys.stdout)
    print(f"fleet {report['mode']} {report['outcome']}" + (f", halted: {report['halted']}" if report["halted"] else ""))
    if report["outcome"] == "interrupted":
        for r in report["results"]:
            if r["run_id"]:
                print(f"{r['target']}/{r['trust_domain']}: {cleanup_line(runs_dir, r['run_id'], r['worker'])}")
        return interrupted_exit("")
    return EXIT_OK if state.is_completed() and report["outcome"] == "passed" else EXIT_FAILED


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`meshid fleet` and its flags."""
    fleet = sub.add_parser("fleet", help="run the guide over clusters x trust domains: validate, rollout or plan")
    fleet.add_argument("--fleet-file", required=True, help="YAML fleet file (mode, targets, trust_domains, ...)")
    fleet.add_argument("--mode", choices=["validate", "rollout", "plan"], help="override the file's mode")
    fleet.add_argument("--dispatch", choices=["local", "workers"],
                       help="override the file's dispatch: local (subflows of this process, the default) or workers "
                            "(runs of the fleet-target deployment on Prefect workers; needs PREFECT_API_URL)")
    fleet.add_argument("--json-report", help="write the fleet's JSON report here")
    fleet.add_argument("--junit", help="write JUnit XML (one testsuite per target x trust domain) here")
    fleet.set_defaults(func=_fleet)
