"""The `meshid` command line. The only module of meshid that may start flows (it imports them lazily).

Exit codes: 0 success, 1 a stage or operation failed, 2 bad input (the message names the field and the fix); a run
or fleet stopped by SIGINT or SIGTERM exits 130 or 143 once it has cleaned up (`meshid.interrupt`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from meshid import LIBRARY_LOGGER, interrupt

if TYPE_CHECKING:
    from meshid.prefectserver import BackgroundServer, Handle

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _sandbox_up(args: argparse.Namespace) -> int:
    from sandbox import lifecycle

    print(f"starting sandbox {args.name} with {args.nodes} node(s)...", file=sys.stderr)
    info = lifecycle.up(args.name, nodes=args.nodes, api_port=args.api_port, tick_s=args.tick)
    print(f"sandbox {info.name} is up: API {info.api_url}, charts {info.chart_repo_url}", file=sys.stderr)
    print(info.kubeconfig)
    return EXIT_OK


def _sandbox_down(args: argparse.Namespace) -> int:
    from sandbox import lifecycle

    if args.all:
        names = lifecycle.down_all()
        print(f"sandboxes down: {', '.join(names)}" if names else "no sandbox was up", file=sys.stderr)
        return EXIT_OK
    lifecycle.down(args.name)
    print(f"sandbox {args.name} is down", file=sys.stderr)
    return EXIT_OK


def _sandbox_kubeconfig(args: argparse.Namespace) -> int:
    from sandbox import lifecycle

    print(lifecycle.get(args.name).kubeconfig)
    return EXIT_OK


def _owner(owner: dict | None) -> str:
    """Who started a sandbox: a run whose process still runs, one that is gone (the sandbox is orphaned), or a
    person (`meshid sandbox up`)."""
    from meshid.runrecord import Writer

    if not owner or "pid" not in owner:
        return "-"
    alive = Writer(pid=owner["pid"], start_ticks=owner["start_ticks"]).alive()
    return f"run {owner.get('run_id')} ({'pid ' + str(owner['pid']) if alive else 'gone: orphaned'})"


def _sandbox_status(args: argparse.Namespace) -> int:
    from sandbox import lifecycle

    rows = [{**info.to_json(), "running": info.running(), "owned_by": _owner(info.owner)}
            for info in lifecycle.status()]
    _print_rows(rows, args.output, "no sandbox is up", ("name", "running", "nodes", "api_url", "chart_repo_url",
                                                       "owned_by"))
    return EXIT_OK


def _print_rows(rows: list[dict], output: str, empty: str, columns: Sequence[str]) -> None:
    """Rows as JSON, or as a table of `columns` (`meshid.terminal.print_table`)."""
    from meshid.terminal import print_table

    if output == "json":
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(empty)
    else:
        print_table([c.upper() for c in columns],
                    [[str(row[c]).lower() if isinstance(row[c], bool) else row[c] for c in columns] for row in rows],
                    sys.stdout)


def _sandbox_traffic(args: argparse.Namespace) -> int:
    from sandbox import lifecycle

    print(json.dumps(lifecycle.traffic(args.name), indent=2))
    return EXIT_OK


def _sandbox_faults(args: argparse.Namespace) -> int:
    from sandbox import lifecycle

    knobs = {}
    for pair in args.set or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE, e.g. --set transient_503_share=0.3")
        try:
            knobs[key] = json.loads(value)
        except json.JSONDecodeError:
            knobs[key] = value
    print(json.dumps(lifecycle.set_faults(args.name, **knobs), indent=2))
    return EXIT_OK


def prefect_defaults() -> None:
    """Prefect settings meshid needs unless the user set them, before Prefect is imported (it reads them then): no
    analytics (Prefect's SDK asks its server whether analytics are on, and falls back to this setting,
    prefect/_internal/analytics/service.py), and no SDK telemetry (on a terminal, Prefect's import prints a notice
    and queues onboarding events unless DO_NOT_TRACK is set, prefect/_internal/analytics/__init__.py); the library's
    loggers (`meshid.*`) among Prefect's extra loggers, whose records emitted inside a run go to that run's logs (the
    import's logging set-up gives them the API handler, prefect/logging/configuration.py)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", LIBRARY_LOGGER)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the garbage collector while a command imports and validates, then freeze the objects that built.

    Importing prefect, the kubernetes client and the flows builds about 200,000 long-lived objects (classes, pydantic
    schemas), and the collector's passes over them during the import cost 0.25 to 0.35 s of its 1.5 s. Frozen, they
    are also skipped by every later collection of the run.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


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


def spire_namespaces(args: argparse.Namespace) -> dict:
    """The `namespaces` parameters `--spire-namespace` and `--spire-release` give ({} when neither is set)."""
    given = {k: v for k, v in (("spire", args.spire_namespace), ("spire_release", args.spire_release)) if v}
    return {"namespaces": given} if given else {}


@contextmanager
def _until_interrupted() -> Iterator[None]:
    """A flow-starting command: Prefect's defaults set before Prefect is imported (it reads them then), SIGINT and
    SIGTERM handled in the block (`meshid.interrupt`), which ends quietly on a stop while it waited for the Prefect
    server, and on a termination Prefect's flow engine raised before the flow's own handlers were in place."""
    prefect_defaults()
    with interrupt.signals_handled():
        try:
            yield
        except interrupt.Interrupted:
            pass  # no flow started: the caller says so
        except BaseException as exc:  # Prefect is imported by now; imported earlier it would miss collector_paused
            from prefect.exceptions import TerminationSignal

            if not isinstance(exc, TerminationSignal):
                raise
            # the engine sent the signal to this process again, and the handler recorded it


def _background_server() -> Handle | None:
    """meshid's background Prefect server for a flow-starting command, unless the user set PREFECT_API_URL (then
    meshid starts nothing). Called after the input is validated and before Prefect is imported: a first call starts
    the server here, and its start overlaps the import; `flows.foreground` waits for it."""
    from meshid import prefectserver
    from meshid.settings import load_settings

    if "prefect" in sys.modules:  # an in-process caller (a test harness) imported it: its settings say it all
        from prefect.settings import get_current_settings

        if get_current_settings().api.url:
            return None
    elif prefectserver.configured_api_url():
        return None
    return prefectserver.BackgroundServer(load_settings().home).ensure()


def _cleanup_line(runs_dir: Path, run_id: str, worker: str | None = None) -> str:
    """The run's cleanup, in one line, from its ledger (on the worker that ran it, for a fleet's worker runs)."""
    from meshid.ledger import FILE, Ledger

    path = runs_dir / run_id / FILE
    if not path.is_file():
        return f"cleanup: recorded on the machine that ran it ({worker or 'not here'}; `meshid runs` there)"
    run = Ledger.load(path).run
    return f"cleanup: {run.summary}" if run and run.summary else "cleanup: not recorded (see `meshid runs`)"


def _interrupted_exit(what: str) -> int:
    """The exit code of a command a signal stopped; says so when nothing reported."""
    signum = interrupt.received()
    assert signum is not None
    if what:
        print(f"meshid: {what} was {interrupt.Interrupted(signum)} before it started; nothing to clean up",
              file=sys.stderr)
    return interrupt.exit_code(signum)


def _run(args: argparse.Namespace) -> int:
    state = None
    live = sys.stderr.isatty() and not args.verbose
    if live:  # the live stage lines replace Prefect's console log lines; the run's logs in Prefect stay whole
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    with _until_interrupted():
        with collector_paused():
            from meshid.kubeconfig import load_kubeconfig
            from meshid.models import parse_params
            from meshid.settings import load_settings

            params = parse_params(run_params(args))  # bad input stops here, before anything touches a cluster
            if params.target.kubeconfig:
                load_kubeconfig(params.target.kubeconfig, params.target.context)
            runs_dir = load_settings().runs_dir
            server = _background_server()
            from flows.foreground import foreground
            from flows.guide import guide
            from meshid.terminal import live_stages

        json_path = args.json_report or str(Path(tempfile.mkdtemp(prefix="meshid-")) / "report.json")
        with foreground(server), live_stages(sys.stderr) if live else nullcontext():
            state = guide(params=params, json_report=json_path, junit_report=args.junit, return_state=True)
    report = json.loads(Path(json_path).read_text()) if state and Path(json_path).is_file() else None
    if report is None:
        if interrupt.received():
            return _interrupted_exit("the run")
        print(f"meshid: the run crashed before it wrote a report: {state.message}", file=sys.stderr)
        return EXIT_FAILED
    _print_run(report)
    if report["outcome"] == "interrupted":
        stopped = ", ".join(report["interrupted_stages"])
        print(f"run {report['run_id']} interrupted by {report['signal']} at {stopped}; "
              f"{_cleanup_line(runs_dir, report['run_id'])}")
        return _interrupted_exit("")
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


def _check(args: argparse.Namespace) -> int:
    from meshid import checks, health
    from meshid.kube import Cluster
    from meshid.models import parse_params
    from meshid.terminal import check_line, marks

    if args.list:
        print(checks.doc())
        return EXIT_OK
    if not args.kubeconfig:
        raise SystemExit("meshid check: --kubeconfig is required (or --list)")
    target = {"name": "check", "provider": "context", "kubeconfig": args.kubeconfig}
    if args.context:
        target["context"] = args.context
    params = parse_params({"target": target, "trust_domain": args.trust_domain or "default.default.mesh.local",
                           **spire_namespaces(args)})
    cluster = Cluster(Path(args.kubeconfig), args.context)  # unknown context / unreadable file: InputError
    groups = health.run_checks(cluster, params)
    results = [r for _, group in groups for r in group]
    blocking = [r for r in results if r.blocking]
    if args.output == "json":
        print(json.dumps({"outcome": "failed" if blocking else "passed",
                          "checks": [{"group": g, **r.model_dump(mode="json")} for g, rs in groups for r in rs]},
                         indent=2))
    else:
        shown = marks(sys.stdout)
        for group, rs in groups:
            print(group)
            print("-" * len(group))
            for r in rs:
                print(check_line(r, shown))
            print()
        print(f"Status check results are {shown['failed' if blocking else 'passed']}")
    return EXIT_FAILED if blocking else EXIT_OK


def _add_check(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("check", help="read-only health checks of Kong Mesh + SPIRE identity on a cluster")
    check.add_argument("--kubeconfig", help="kubeconfig of the cluster")
    check.add_argument("--context", help="kubeconfig context (default: the current one)")
    check.add_argument("--trust-domain", help="expected trust domain (default default.default.mesh.local)")
    _add_spire_release(check)
    check.add_argument("-o", "--output", choices=["table", "json"], default="table")
    check.add_argument("--list", action="store_true", help="print the check catalogue (codes, severities, hints)")
    check.set_defaults(func=_check)


def _add_spire_release(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spire-namespace", help="namespace of the SPIRE release (default spire)")
    parser.add_argument("--spire-release", help="helm release name of SPIRE (default spire); SPIRE's workloads are "
                        "named after it as the chart names them")


def _add_run(sub: argparse._SubParsersAction) -> None:
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
    _add_spire_release(run)
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


def _add_sandbox(sub: argparse._SubParsersAction) -> None:
    sandbox = sub.add_parser("sandbox", help="local clusters: a real API server with kwok nodes and an emulated mesh")
    cmds = sandbox.add_subparsers(dest="sandbox_cmd", required=True, metavar="COMMAND")
    up = cmds.add_parser("up", help="start a sandbox and print its kubeconfig path")
    up.add_argument("--name", required=True)
    up.add_argument("--nodes", type=int, default=1, help="number of Ready nodes (default 1)")
    up.add_argument("--api-port", type=int, help="kube-apiserver port on 127.0.0.1 (default: a free one)")
    up.add_argument("--tick", type=float, default=5.0, help="emulator status tick in seconds (default 5)")
    up.set_defaults(func=_sandbox_up)
    down = cmds.add_parser("down", help="stop every process of a sandbox and remove its files")
    which = down.add_mutually_exclusive_group(required=True)
    which.add_argument("--name")
    which.add_argument("--all", action="store_true", help="every sandbox on this machine, started or half-started")
    down.set_defaults(func=_sandbox_down)
    kubeconfig = cmds.add_parser("kubeconfig", help="print the path of a sandbox's kubeconfig")
    kubeconfig.add_argument("--name", required=True)
    kubeconfig.set_defaults(func=_sandbox_kubeconfig)
    status = cmds.add_parser("status", help="list sandboxes, with the run that started each (gone: orphaned)")
    status.add_argument("-o", "--output", choices=["table", "json"], default="table")
    status.set_defaults(func=_sandbox_status)
    faults = cmds.add_parser("faults", help="set the emulator's fault knobs of a sandbox")
    faults.add_argument("--name", required=True)
    faults.add_argument("--set", action="append", metavar="KEY=VALUE")
    faults.set_defaults(func=_sandbox_faults)
    traffic = cmds.add_parser("traffic", help="what a sandbox's data plane allowed and denied, per client and server")
    traffic.add_argument("--name", required=True)
    traffic.set_defaults(func=_sandbox_traffic)


def _fleet(args: argparse.Namespace) -> int:
    state = None
    with _until_interrupted():
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
            server = _background_server() if spec.dispatch is Dispatch.LOCAL else None
            from flows.dispatch import check_workers
            from flows.fleet import fleet
            from flows.foreground import foreground

            check_workers(spec)

        json_path = args.json_report or str(Path(tempfile.mkdtemp(prefix="meshid-fleet-")) / "fleet.json")
        with foreground(server):
            state = fleet(spec=spec, json_report=json_path, junit_report=args.junit, return_state=True)
    if state is None or not Path(json_path).is_file():
        if interrupt.received():
            return _interrupted_exit("the fleet run")
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
                print(f"{r['target']}/{r['trust_domain']}: {_cleanup_line(runs_dir, r['run_id'], r['worker'])}")
        return _interrupted_exit("")
    return EXIT_OK if state.is_completed() and report["outcome"] == "passed" else EXIT_FAILED


def _add_fleet(sub: argparse._SubParsersAction) -> None:
    fleet = sub.add_parser("fleet", help="run the guide over clusters x trust domains: validate, rollout or plan")
    fleet.add_argument("--fleet-file", required=True, help="YAML fleet file (mode, targets, trust_domains, ...)")
    fleet.add_argument("--mode", choices=["validate", "rollout", "plan"], help="override the file's mode")
    fleet.add_argument("--dispatch", choices=["local", "workers"],
                       help="override the file's dispatch: local (subflows of this process, the default) or workers "
                            "(runs of the fleet-target deployment on Prefect workers; needs PREFECT_API_URL)")
    fleet.add_argument("--json-report", help="write the fleet's JSON report here")
    fleet.add_argument("--junit", help="write JUnit XML (one testsuite per target x trust domain) here")
    fleet.set_defaults(func=_fleet)


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
    _print_rows(rows, args.output, f"no runs under {runs_dir}", ("run_id", "state", "provider", "stage", "cleanup"))
    return EXIT_OK


def _add_recovery(sub: argparse._SubParsersAction) -> None:
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


def _server() -> BackgroundServer:
    from meshid.prefectserver import BackgroundServer
    from meshid.settings import load_settings

    return BackgroundServer(load_settings().home)


def _server_status(args: argparse.Namespace) -> int:
    from meshid.prefectserver import State, configured_api_url
    from meshid.redact import redact

    server = _server()
    seen = server.look()
    theirs = configured_api_url()
    record = seen.record
    if args.output == "json":
        print(json.dumps({"state": seen.state.value, "url": record.url if record else None,
                          "api_url": record.api_url if record else None, "pid": record.process.pid if record else None,
                          "started_at": record.started_at.isoformat(timespec="seconds") if record else None,
                          "problem": seen.problem, "database": str(server.database), "log": str(server.log),
                          "prefect_api_url": redact(theirs) if theirs else None}, indent=2))
        return EXIT_OK if seen.state is State.RUNNING else EXIT_FAILED
    print(f"background Prefect server: {seen.describe()}")
    if seen.state is State.RUNNING:
        print(f"flow runs: {record.url}/runs")
    elif seen.state is State.STOPPED:
        print("the next `meshid run` or `meshid fleet` starts one (or `meshid server start`)")
    elif seen.state is not State.STARTING:
        print("the next `meshid run` or `meshid fleet` replaces it (or `meshid server start`)")
    print(f"database: {server.database}")
    print(f"log: {server.log}")
    if theirs:
        print(f"PREFECT_API_URL is set ({redact(theirs)}): `meshid run` and `meshid fleet` use that server, "
              "not this one")
    return EXIT_OK if seen.state is State.RUNNING else EXIT_FAILED


def _server_start(args: argparse.Namespace) -> int:
    server = _server()
    handle = server.ensure(port=args.port)
    if not handle.started and args.port not in (None, handle.record.port):
        print(f"background Prefect server: already {server.look().describe()}, not on port {args.port} "
              "(`meshid server stop` first, to move it)")
        return EXIT_FAILED
    handle.ready()
    print(f"background Prefect server: {server.look().describe()}")
    return EXIT_OK


def _server_stop(args: argparse.Namespace) -> int:
    from meshid.prefectserver import State

    server = _server()
    seen = server.stop()
    if seen.record is None:
        print(f"background Prefect server: none was running (nothing under {server.folder})")
    elif seen.state is State.DEAD:
        print(f"background Prefect server: was {seen.describe()}; removed its pid file")
    else:
        print(f"background Prefect server: stopped (pid {seen.record.process.pid}, {seen.record.url}); its runs stay "
              f"in {server.database} for the next one")
    return EXIT_OK


def _add_server(sub: argparse._SubParsersAction) -> None:
    server = sub.add_parser("server", help="meshid's background Prefect server, which `meshid run` and `meshid fleet` "
                                           "use when PREFECT_API_URL is not set")
    cmds = server.add_subparsers(dest="server_cmd", required=True, metavar="COMMAND")
    status = cmds.add_parser("status", help="whether it runs, its address, its data and log (exit 0 when it answers)")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text")
    status.set_defaults(func=_server_status)
    start = cmds.add_parser("start", help="start it (or find it running) and wait until it answers")
    start.add_argument("--port", type=int, help="port on 127.0.0.1 for a new server (default: its last port while "
                       "free, else any free one)")
    start.set_defaults(func=_server_start)
    stop = cmds.add_parser("stop", help="stop it; its runs stay in its database for the next one")
    stop.set_defaults(func=_server_stop)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every meshid command."""
    parser = argparse.ArgumentParser(prog="meshid", description="Prove Kong Mesh workload identity issued by SPIRE works.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_check(sub)
    _add_fleet(sub)
    _add_recovery(sub)
    _add_server(sub)
    _add_sandbox(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the meshid command line; returns the exit code."""
    from meshid.errors import ExternalCallError, InputError, WaitTimeout
    from sandbox.errors import SandboxError, StartFailed

    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:
        # `meshid ... | head`: the reader left, so end quietly. SIGPIPE stays ignored (Python's default): with it
        # restored, a port-forward thread writing to a socket its peer had closed would kill the whole run.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except InputError as exc:
        print(f"meshid: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StartFailed, ExternalCallError, WaitTimeout) as exc:
        print(f"meshid: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except SandboxError as exc:
        print(f"meshid: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def entry() -> None:
    """The `meshid` command: `main()`, then an exit without the interpreter's last full garbage collection.

    That collection walks every object of prefect, pydantic and the kubernetes client, 0.25 s after an import alone
    and 0.5 s after a run, on every command. Frozen objects are left to the OS; exit handlers (Prefect's log and event
    flush among them) still run, and files are closed as before.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
