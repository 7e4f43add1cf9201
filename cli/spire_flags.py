"""`--spire-namespace` and `--spire-release` of `meshid run` and `meshid check`: the flags and the parameters they
give."""

from __future__ import annotations

import argparse


def add_spire_release(parser: argparse.ArgumentParser) -> None:
    """`--spire-namespace` and `--spire-release` on `parser`."""
    parser.add_argument("--spire-namespace", help="namespace of the SPIRE release (default spire)")
    parser.add_argument("--spire-release", help="helm release name of SPIRE (default spire); SPIRE's workloads are "
                        "named after it as the chart names them")


def spire_namespaces(args: argparse.Namespace) -> dict:
    """The `namespaces` parameters `--spire-namespace` and `--spire-release` give ({} when neither is set)."""
    given = {k: v for k, v in (("spire", args.spire_namespace), ("spire_release", args.spire_release)) if v}
    return {"namespaces": given} if given else {}
