"""What meshid writes for people: one line per check with a mark, like `linkerd check`, and tables that fit.

A check reads `√ MID003 <message>` when it passed, `‼` when a `warn` check failed (the stage still passes) and `×`
when a `fail` check failed, with the catalogue's hint indented under a warned or failed one. Streams whose encoding
cannot carry those marks get ASCII ones. Tables are rich's (a dependency through Prefect; no Prefect import here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from meshid.redact import redact
from meshid.results import CheckResult

UNICODE_MARKS = {"passed": "√", "warned": "‼", "failed": "×"}
ASCII_MARKS = {"passed": "[ok]", "warned": "[warn]", "failed": "[FAIL]"}
HINT_INDENT = "    "
# Columns wide enough for any row when no terminal sets the width: piped output is never wrapped.
_UNBOUNDED_WIDTH = 10_000


def marks(stream: TextIO) -> dict[str, str]:
    """The marks `stream` can show: `√ ‼ ×` when its encoding can encode them, else `[ok] [warn] [FAIL]`."""
    try:
        "".join(UNICODE_MARKS.values()).encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return UNICODE_MARKS


def state(check: CheckResult) -> str:
    """passed, warned (a failed `warn` check) or failed (a failed `fail` check: it fails its stage)."""
    if not check.failed:
        return "passed"
    return "failed" if check.blocking else "warned"


def one_line(text: str) -> str:
    """`text` with its lines joined by single spaces."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def check_line(check: CheckResult, shown: dict[str, str]) -> str:
    """`<mark> <code> <message>`, redacted, with the hint on an indented next line for a warned or failed check.
    A message of several lines (an HTTP body it quotes) is joined into one."""
    line = f"{shown[state(check)]} {check.code} {one_line(check.message)}"
    if check.failed and check.hint:
        line += f"\n{HINT_INDENT}hint: {check.hint}"
    return redact(line)


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO) -> None:
    """A table on `stream`: as wide as the terminal on a TTY (long cells fold inside their column, none is cut),
    unwrapped and without colour when not a TTY; numeric columns are right-aligned. rich draws ASCII borders itself when the stream's encoding is not
    UTF (`Box.substitute`, rich/box.py)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    tty = stream.isatty()
    console = Console(file=stream, width=None if tty else _UNBOUNDED_WIDTH, highlight=False, soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold" if tty else None)
    for i, name in enumerate(header):
        numeric = bool(rows) and all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        table.add_column(name, overflow="fold", justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*("" if cell is None else redact(str(cell)) for cell in row))
    with console.capture() as captured:
        console.print(table)
    stream.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
