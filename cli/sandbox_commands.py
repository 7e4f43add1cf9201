"""`meshid sandbox up|down|kubeconfig|status|faults|traffic`: local clusters, through the sandbox provider
(`meshid.providers.sandbox`), the one module of meshid that drives the sandbox."""

from __future__ import annotations

import argparse
import json
import sys

from cli.exits import EXIT_OK
from cli.tables import print_rows


def _sandbox_up(args: argparse.Namespace) -> int:
    from meshid.providers import sandbox

    print(f"starting sandbox {args.name} with {args.nodes} node(s)...", file=sys.stderr)
    info = sandbox.up(args.name, nodes=args.nodes, api_port=args.api_port, tick_s=args.tick)
    print(f"sandbox {info.name} is up: API {info.api_url}, charts {info.chart_repo_url}", file=sys.stderr)
    print(info.kubeconfig)
    return EXIT_OK


def _sandbox_down(args: argparse.Namespace) -> int:
    from meshid.providers import sandbox

    if args.all:
        names = sandbox.down_all()
        print(f"sandboxes down: {', '.join(names)}" if names else "no sandbox was up", file=sys.stderr)
        return EXIT_OK
    sandbox.down(args.name)
    print(f"sandbox {args.name} is down", file=sys.stderr)
    return EXIT_OK


def _sandbox_kubeconfig(args: argparse.Namespace) -> int:
    from meshid.providers import sandbox

    print(sandbox.kubeconfig(args.name))
    return EXIT_OK


def _sandbox_status(args: argparse.Namespace) -> int:
    from meshid.providers import sandbox

    print_rows(sandbox.status(), args.output, "no sandbox is up", ("name", "running", "nodes", "api_url",
                                                                  "chart_repo_url", "owned_by"))
    return EXIT_OK


def _sandbox_traffic(args: argparse.Namespace) -> int:
    from meshid.providers import sandbox

    print(json.dumps(sandbox.traffic(args.name), indent=2))
    return EXIT_OK


def _sandbox_faults(args: argparse.Namespace) -> int:
    from meshid.providers import sandbox

    knobs = {}
    for pair in args.set or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE, e.g. --set transient_503_share=0.3")
        try:
            knobs[key] = json.loads(value)
        except json.JSONDecodeError:
            knobs[key] = value
    print(json.dumps(sandbox.set_faults(args.name, knobs), indent=2))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`meshid sandbox ...` and its commands."""
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
