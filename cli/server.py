"""`meshid server status|start|stop`: meshid's background Prefect server (`meshid.prefectserver`), without importing
Prefect."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from cli.exits import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from meshid.prefectserver import BackgroundServer


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


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`meshid server status|start|stop`."""
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
