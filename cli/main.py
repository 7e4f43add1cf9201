"""The `meshid` command: its argument parser, and the exit code of each command (`cli.exits`)."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence

from cli import check, fleet, recovery, run, sandbox_commands, server
from cli.exits import EXIT_BAD_INPUT, EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every meshid command."""
    parser = argparse.ArgumentParser(prog="meshid", description="Prove Kong Mesh workload identity issued by SPIRE works.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run.add_parser(sub)
    check.add_parser(sub)
    fleet.add_parser(sub)
    recovery.add_parser(sub)
    server.add_parser(sub)
    sandbox_commands.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the meshid command line; returns the exit code."""
    from meshid.errors import ExternalCallError, InputError, WaitTimeout

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
    except (ExternalCallError, WaitTimeout) as exc:
        print(f"meshid: {exc}", file=sys.stderr)
        return EXIT_FAILED


def entry() -> None:
    """The `meshid` command: `main()`, then an exit without the interpreter's last full garbage collection.

    That collection walks every object of prefect, pydantic and the kubernetes client, 0.25 s after an import alone
    and 0.5 s after a run, on every command. Frozen objects are left to the OS; exit handlers (Prefect's log and event
    flush among them) still run, and files are closed as before.
    """
    code = main()
    gc.freeze()
    sys.exit(code)

