"""`spire-server` inside the sandbox's spire-server pods: `kubectl exec ... -- spire-server entry show`.

kwok's Exec (v0.8.0 pkg/kwok/server/debugging_exec.go) runs an exec'd command on the host with the Exec object's
environment; the kwok controller finds `spire-server` on its PATH, where the sandbox puts a wrapper of this script
(`install`). The emulator's Exec for each spire-server pod names the file the emulator keeps that server's entries in
(MESHID_SPIRE_STATE). This script imports nothing of the project, so an exec costs one small interpreter start.

What it prints is what SPIRE 1.15's CLI prints (spiffe/spire cmd/spire-server/cli/entry/show.go):
- `-output json`: the ListEntriesResponse through protojson with UseProtoNames and EmitUnpopulated, nulls removed,
  re-marshalled by Go's encoding/json (pkg/common/cliprinter/internal/protojson/protojson.go): one line, keys sorted,
  HTML characters escaped, int64 fields as strings, then a newline;
- the default (pretty): "Found N entries" and each entry as printEntry (entry/util.go) prints it;
entries sorted by SPIFFE ID, parent ID, TTLs and selectors (pkg/common/util/sort.go SortTypesEntries), and filtered as
the server's ListEntries filters (-spiffeID, -parentID exact; -selector by -matchSelectorsOn, superset by default;
-hint; downstream entries only with -downstream). While the server does not serve, the CLI's dial of its socket fails
(grpc's transport error, "Error: " + the error on stderr, exit 1). A command this script does not model fails as an
unknown command of mitchellh/cli v1.1.5 does: the usage and the top-level commands on stderr, exit 127.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

STATE_ENV = "MESHID_SPIRE_STATE"
SOCKET = "/tmp/spire-server/private/api.sock"
NOT_SERVING = (f'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial '
               f'unix {SOCKET}: connect: connection refused"')
# spire-server's top-level commands (cmd/spire-server/cli/cli.go) with their synopses; parents of nested commands
# are mitchellh/cli's placeholders, with an empty synopsis
COMMANDS = {"agent": "", "bundle": "", "entry": "", "federation": "", "healthcheck": "Determines server health status",
            "jwt": "", "localauthority": "", "logger": "", "run": "Runs the server", "token": "",
            "upstreamauthority": "", "validate": "Validates a SPIRE server configuration file", "x509": ""}
# entry show's flags (show.go AppendFlags, cliprinter, util_posix.go addOSFlags): name -> (kind, default, usage)
FLAGS = {
    "downstream": ("bool", "", "A boolean value that, when set, indicates that the entry describes a downstream "
                               "SPIRE server"),
    "entryID": ("string", "", "The Entry ID of the records to show"),
    "federatesWith": ("value", "", "SPIFFE ID of a trust domain an entry is federate with. Can be used more than "
                                   "once"),
    "hint": ("string", "", "The Hint of the records to show (optional)"),
    "instance": ("string", "", "Instance name to substitute into socket templates (env "
                               "SPIRE_SERVER_PRIVATE_SOCKET_TEMPLATE)."),
    "matchFederatesWithOn": ("string", "superset", "The match mode used when filtering by federates with. Options: "
                                                   "exact, any, superset and subset"),
    "matchSelectorsOn": ("string", "superset", "The match mode used when filtering by selectors. Options: exact, "
                                               "any, superset and subset"),
    "output": ("value", "pretty", "Desired output format (pretty, json); default: pretty."),
    "parentID": ("string", "", "The Parent ID of the records to show"),
    "selector": ("value", "", "A colon-delimited type:value selector. Can be used more than once"),
    "socketPath": ("string", SOCKET, "Path to the SPIRE Server API socket"),
    "spiffeID": ("string", "", "The SPIFFE ID of the records to show"),
}
REPEATED = ("selector", "federatesWith")


class Failed(Exception):
    """The command fails: `message` on stderr, exit `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def install(bin_dir: Path, python: str) -> Path:
    """Write the `spire-server` wrapper that runs this script with `python`; return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "spire-server"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(python)} -I -S {shlex.quote(str(Path(__file__).resolve()))} '
                       f'"$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"    {name}{' ' * (width - len(name))}    {synopsis}" for name, synopsis in sorted(COMMANDS.items())]
    return "Usage: spire-server [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n" + \
        "\n".join(lines) + "\n"


def _flag_help() -> str:
    out = []
    for name, (kind, default, usage) in sorted(FLAGS.items()):
        typed = f"  -{name}" + (f" {kind}" if kind != "bool" else "")
        shown = f" (default {json.dumps(default)})" if default and kind == "string" else \
            (f" (default {default})" if default else "")
        out.append(f"{typed}\n    \t{usage}{shown}")
    return "Usage of entry show:\n" + "\n".join(out) + "\n"


def parse_flags(args: list[str]) -> dict:
    """Go's flag package on entry show's flags: `-name value`, `-name=value`, `--name`; booleans take no value."""
    values: dict = {name: [] if name in REPEATED else default for name, (_, default, _) in FLAGS.items()}
    values["downstream"] = False
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg in ("-", "--"):
            break
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in FLAGS:
            raise Failed(f"flag provided but not defined: -{name}\n{_flag_help()}")
        if FLAGS[name][0] == "bool":
            values[name] = value.lower() in ("", "1", "t", "true") if eq else True
        else:
            if not eq:
                if i + 1 >= len(args):
                    raise Failed(f"flag needs an argument: -{name}\n{_flag_help()}")
                value, i = args[i + 1], i + 1
            if name in REPEATED:
                values[name].append(value)
            else:
                values[name] = value
        i += 1
    if values["output"].lower() not in ("json", "pretty", "prettyprint"):
        raise Failed(f'invalid value "{values["output"]}" for flag -output: bad formatter flag: unknown format '
                     f'option: "{values["output"]}"\n{_flag_help()}')
    return values


def _id(text: str, what: str) -> dict:
    if not text.startswith("spiffe://"):
        raise Failed(f'Error: error parsing {what} "{text}": scheme is missing or invalid')
    trust_domain, slash, path = text[len("spiffe://"):].partition("/")
    return {"trust_domain": trust_domain, "path": slash + path}


def _selectors_match(have: list[dict], want: list[dict], how: str) -> bool:
    have_set = {(s["type"], s["value"]) for s in have}
    want_set = {(s["type"], s["value"]) for s in want}
    return {"exact": have_set == want_set, "any": bool(have_set & want_set), "superset": have_set >= want_set,
            "subset": have_set <= want_set}[how]


def _filter(flags: dict) -> dict:
    """The request show.go builds from the flags, with its parse errors (raised before the server is dialled)."""
    if flags["entryID"]:
        if flags["parentID"] or flags["spiffeID"] or flags["selector"]:
            raise Failed("Error: the -entryID flag can't be combined with others")
        return {"id": flags["entryID"]}
    parent = _id(flags["parentID"], "parent ID") if flags["parentID"] else None
    spiffe_id = _id(flags["spiffeID"], "SPIFFE ID") if flags["spiffeID"] else None
    how = flags["matchSelectorsOn"]
    wanted = []
    if flags["selector"]:
        if how not in ("exact", "any", "superset", "subset"):
            raise Failed(f'Error: match behavior "{how}" unknown')
        for selector in flags["selector"]:
            kind, colon, value = selector.partition(":")
            if not colon:
                raise Failed(f'Error: error parsing selectors: selector "{selector}" must be formatted as '
                             f'type:value')
            wanted.append({"type": kind, "value": value})
    return {"parent_id": parent, "spiffe_id": spiffe_id, "selectors": wanted, "match": how, "hint": flags["hint"],
            "downstream": flags["downstream"]}


def select(entries: list[dict], request: dict) -> list[dict]:
    """The entries the server's GetEntry (an `id` request) or ListEntries returns."""
    if "id" in request:
        found = [e for e in entries if e["id"] == request["id"]]
        if not found:
            raise Failed(f"Error: error fetching entry ID {request['id']}: rpc error: code = NotFound desc = "
                         "entry not found")
        return found
    return [e for e in entries
            if request["parent_id"] in (None, e["parent_id"]) and request["spiffe_id"] in (None, e["spiffe_id"])
            and (not request["selectors"] or _selectors_match(e["selectors"], request["selectors"], request["match"]))
            and request["hint"] in ("", e["hint"]) and e["downstream"] == request["downstream"]]


def _order(entry: dict) -> tuple:
    return (entry["spiffe_id"]["trust_domain"], entry["spiffe_id"]["path"], entry["parent_id"]["trust_domain"],
            entry["parent_id"]["path"], entry["x509_svid_ttl"], entry["jwt_svid_ttl"], len(entry["selectors"]),
            [(s["type"], s["value"]) for s in entry["selectors"]])


def go_json(value: object) -> str:
    """Go's json.Marshal of decoded JSON: compact, map keys sorted, <, >, & and U+2028/U+2029 escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _spiffe(id_: dict) -> str:
    return f"spiffe://{id_['trust_domain']}{id_['path']}"


def pretty(entries: list[dict]) -> str:
    """printEntries of show.go: the count, then each entry."""
    out = [f"Found {len(entries)} {'entry' if len(entries) == 1 else 'entries'}\n"]
    for e in entries:
        out.append(f"Entry ID                : {e['id'] or '(none)'}\n"
                   f"SPIFFE ID               : {_spiffe(e['spiffe_id'])}\n"
                   f"Parent ID               : {_spiffe(e['parent_id'])}\n"
                   f"Revision                : {e['revision_number']}\n")
        if e["downstream"]:
            out.append("Downstream              : true\n")
        out.append(f"X509-SVID TTL           : {e['x509_svid_ttl'] or 'default'}\n"
                   f"JWT-SVID TTL            : {e['jwt_svid_ttl'] or 'default'}\n")
        out += [f"Selector                : {s['type']}:{s['value']}\n" for s in e["selectors"]]
        out += [f"FederatesWith           : {td}\n" for td in e["federates_with"]]
        out += [f"DNS name                : {name}\n" for name in e["dns_names"]]
        out += ["Admin                   : true\n"] if e["admin"] else []
        out += ["StoreSvid               : true\n"] if e["store_svid"] else []
        out += [f"Hint                    : {e['hint']}\n"] if e["hint"] else []
        out.append("\n")
    return "".join(out)


def run(args: list[str], state: dict) -> str:
    """The output of `spire-server ARGS` against a server whose state is `state` ({"serving", "entries"})."""
    if args[:2] != ["entry", "show"]:
        raise Failed(_usage(), 127)
    flags = parse_flags(args[2:])
    request = _filter(flags)
    if not state.get("serving"):
        fetching = f"entry ID {request['id']}" if "id" in request else "entries"
        raise Failed(f"Error: error fetching {fetching}: {NOT_SERVING}")
    entries = sorted(select(state.get("entries") or [], request), key=_order)
    for entry in entries:
        entry["selectors"] = sorted(entry["selectors"], key=lambda s: (s["type"], s["value"]))
    if flags["output"].lower() == "json":
        return go_json({"entries": entries, "next_page_token": ""}) + "\n"
    return pretty(entries)


def main(argv: list[str]) -> int:
    """Entry point of the wrapper."""
    try:
        state = json.loads(Path(os.environ[STATE_ENV]).read_text())
    except (KeyError, OSError, ValueError):
        state = {}
    try:
        sys.stdout.write(run(argv, state))
    except Failed as failed:
        sys.stderr.write(str(failed) if str(failed).endswith("\n") else f"{failed}\n")
        return failed.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
