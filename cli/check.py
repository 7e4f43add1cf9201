"""`meshid check`: the read-only check suite (`meshid.health`) on a cluster; no flow, no Prefect."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.exits import EXIT_FAILED, EXIT_OK
from cli.spire_flags import add_spire_release, spire_namespaces


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


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`meshid check` and its flags."""
    check = sub.add_parser("check", help="read-only health checks of Kong Mesh + SPIRE identity on a cluster")
    check.add_argument("--kubeconfig", help="kubeconfig of the cluster")
    check.add_argument("--context", help="kubeconfig context (default: the current one)")
    check.add_argument("--trust-domain", help="expected trust domain (default default.default.mesh.local)")
    add_spire_release(check)
    check.add_argument("-o", "--output", choices=["table", "json"], default="table")
    check.add_argument("--list", action="store_true", help="print the check catalogue (codes, severities, hints)")
    check.set_defaults(func=_check)
