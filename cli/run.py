"""`meshid run`: the guide on one cluster as a Prefect flow (`flows.guide`, imported when the run starts)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from cli.exits import EXIT_FAILED, EXIT_OK
from cli.flow_start import background_server, cleanup_line, interrupted_exit, until_interrupted
from cli.spire_flags import add_spire_release, spire_namespaces
from meshid import interrupt
from meshid.collector import collector_paused


def run_params(args: argparse.Namespace) -> dict:
    """The run parameters the `run` flags give (validated later by `meshid.models.parse_params`)."""
    from meshid.settings import load_settings

    settings = load_settings()
    target = {"name": args.target_name, "provider": args.provider or settings.provider.value}
    for key in ("cluster", "kubeconfig", "context"):
        if getattr(args, key):
            target[key] = getattr(args, key)
    params: dict = {"target": target, "trust_domain": args.trust_domain or settings.trust_domain,
                    "registration": args.registration}
    if args.cleanup:
        params["cleanup"] = args.cleanup
    if args.mtp_match or args.mtp_value:
        params["permission"] = {k: v for k, v in (("type", args.mtp_match), ("value", args.mtp_value)) if v}
    if args.identity_path:
        params["identity_path"] = args.identity_path
    if args.spire_trust_domain:
        params["spire_trust_domain"] = args.spire_trust_domain
    if args.chart_mirror:
        params["charts"] = {"mirror": args.chart_mirror}
    if args.spire_persistence:
        params["spire_persistence"] = args.spire_persistence
    if args.mode:
        params["mode"] = args.mode
    if args.identity_selector:
        params["identity_selector"] = dict(pair.partition("=")[::2] for pair in args.identity_selector)
    for flag in ("accept_impact", "translate_permissions", "keep_probe"):
        if getattr(args, flag):
            params[flag] = True
    return {**params, **spire_namespaces(args)}


def _run(args: argparse.Namespace) -> int:
    state = None
    live = sys.stderr.isatty() and not args.verbose
    if live:  # the live stage lines replace Prefect's console log lines; the run's logs in Prefect stay whole
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    with until_interrupted():
        with collector_paused():
            from meshid.kubeconfig import load_kubeconfig
            from meshid.models import parse_params
            from meshid.settings import load_settings

            params = parse_params(run_params(args))  # bad input stops here, before anything touches a cluster
            if params.target.kubeconfig:
                load_kubeconfig(params.target.kubeconfig, params.target.context)
            runs_dir = load_settings().runs_dir
            server = background_server()
            from flows.foreground import foreground
            from flows.guide import guide
            from meshid.terminal import live_stages

        json_path = args.json_report or str(Path(tempfile.mkdtemp(prefix="meshid-")) / "report.json")
        with foreground(server), live_stages(sys.stderr) if live else nullcontext():
            state = guide(params=params, json_report=json_path, junit_report=args.junit, return_state=True)
    report = json.loads(Path(json_path).read_text()) if state and Path(json_path).is_file() else None
    if report is None:
        if interrupt.received():
            return interrupted_exit("the run")
        print(f"meshid: the run crashed before it wrote a report: {state.message}", file=sys.stderr)
        return EXIT_FAILED
    _print_run(report)
    if report["outcome"] == "interrupted":
        stopped = ", ".join(report["interrupted_stages"])
        print(f"run {report['run_id']} interrupted by {report['signal']} at {stopped}; "
              f"{cleanup_line(runs_dir, report['run_id'])}")
        return interrupted_exit("")
    print(f"run {report['outcome']}" + (f" at {report['failed_stage']}" if report["failed_stage"] else ""))
    return EXIT_OK if state.is_completed() and report["outcome"] in ("passed", "unchanged") else EXIT_FAILED


def _print_run(report: dict) -> None:
    """A run's report for people: each stage's checks as marked lines (hints under warned and failed ones), then the
    table of stages."""
    from meshid.results import CheckResult
    from meshid.terminal import check_line, marks, print_table

    shown = marks(sys.stdout)
    for stage in report["stages"]:
        if stage["checks"]:
            print(stage["name"])
            for check in stage["checks"]:
                print(check_line(CheckResult.model_validate(check), shown))
            print()
    print_table(["STAGE", "OUTCOME", "SECONDS", "TRIES", "CODES"],
                [[s["name"], s["outcome"], round(s["duration_s"], 1), s["attempts"],
                  ",".join(c["code"] for c in s["checks"] if c["outcome"] == "failed")] for s in report["stages"]],
                sys.stdout)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`meshid run` and its flags."""
    run = sub.add_parser("run", help="run the guide on one cluster as a Prefect flow")
    run.add_argument("--provider", choices=["sandbox", "minikube", "kind", "context"],
                     help="where the cluster comes from (default: MESHID_PROVIDER, else sandbox)")
    run.add_argument("--target-name", default="mesh-zone", help="name of the target (default mesh-zone)")
    run.add_argument("--cluster", help="sandbox name, minikube profile or kind cluster (default: the target name)")
    run.add_argument("--kubeconfig", help="kubeconfig of an existing cluster (provider context)")
    run.add_argument("--context", help="kubeconfig context (provider context)")
    run.add_argument("--trust-domain", help="SPIFFE trust domain (default default.default.mesh.local)")
    run.add_argument("--identity-path", help="MeshIdentity spiffeID.path template "
                     "(default /ns/{{ .Namespace }}/sa/{{ .ServiceAccount }})")
    run.add_argument("--spire-trust-domain", help="SPIRE's trust domain when it must differ (models a mismatch)")
    run.add_argument("--mtp-match", choices=["Prefix", "Exact"], help="MeshTrafficPermission match type")
    run.add_argument("--mtp-value", help="SPIFFE ID (prefix) to allow (default spiffe://<td>/ns/<demo ns>)")
    run.add_argument("--cleanup", choices=["always", "on-success", "never"],
                     help="when to remove what the run created (default always; a rollout keeps its changes)")
    run.add_argument("--registration", choices=["as-guide", "chart-class"], default="as-guide",
                     help="ClusterSPIFFEID as in the guide (ignored by SPIRE) or with the chart's className")
    run.add_argument("--chart-mirror", help="chart repository URL to install every chart from")
    add_spire_release(run)
    run.add_argument("--mode", choices=["validate", "rollout"], help="validate (default): the guide's order, the "
                     "denial before the permission; rollout: an existing cluster in production order, permissions "
                     "first, no denial window, the negative probe proves enforcement")
    run.add_argument("--identity-selector", action="append", metavar="LABEL=VALUE",
                     help="the MeshIdentity's dataplane matchLabels (repeatable; default {}: every data plane)")
    run.add_argument("--accept-impact", action="store_true",
                     help="rollout: go on although workloads beyond meshid's own get identity")
    run.add_argument("--translate-permissions", action="store_true",
                     help="rollout: apply the rules equivalents of the legacy from permissions the switch breaks")
    run.add_argument("--keep-probe", action="store_true", help="keep the negative probe after the run")
    run.add_argument("--spire-persistence", choices=["pvc", "emptyDir"],
                     help="spire-server.persistence.type (default pvc: a claim, which needs a default StorageClass)")
    run.add_argument("--json-report", help="write the JSON report here")
    run.add_argument("--junit", help="write JUnit XML (one testcase per stage) here")
    run.add_argument("--verbose", action="store_true", help="on a terminal, Prefect's log lines instead of a live "
                     "line per running stage (not on a terminal, the log lines are always written)")
    run.set_defaults(func=_run)
