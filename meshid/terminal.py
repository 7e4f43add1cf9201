"""What meshid writes for people: one line per check with a mark, like `linkerd check`, and tables that fit.

On a terminal, `meshid run` shows a live line per running stage instead of Prefect's log lines (`live_stages`).

A check reads `√ MID003 <message>` when it passed, `‼` when a `warn` check failed (the stage still passes) and `×`
when a `fail` check failed, with the catalogue's hint indented under a warned or failed one. Streams whose encoding
cannot carry those marks get ASCII ones. Tables are rich's (a dependency through Prefect; no Prefect import here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from meshid.redact import redact
from meshid.results import CheckResult, Outcome, StageResult

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
    unwrapped and without colour when not a TTY; numeric columns are right-aligned. rich draws ASCII borders itself
    when the stream's encoding is not UTF (`Box.substitute`, rich/box.py)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    tty = stream.isatty()
    console = Console(file=stream, width=None if tty else _UNBOUNDED_WIDTH, highlight=False, soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="")  # unstyled: rows rstrip
    for i, name in enumerate(header):
        numeric = bool(rows) and all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows)
        table.add_column(name, overflow="fold", justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*("" if cell is None else redact(str(cell)) for cell in row))
    with console.capture() as captured:
        console.print(table)
    stream.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


class LiveStages:
    """A line per running stage (a spinner, its name, seconds so far), and once a stage ends its mark, name and
    duration printed above them for good."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._shown = marks(stream)
        self._running: dict[str, tuple[float, int]] = {}  # stage: (monotonic start, attempt)
        self._lock = threading.Lock()  # stages start and end in Prefect's task threads
        self._console = Console(file=stream, highlight=False)
        # the stream is written only through this console while live: Prefect's console handler is quieted
        self.live = Live(get_renderable=self._render, console=self._console, refresh_per_second=8, transient=True,
                         redirect_stdout=False, redirect_stderr=False)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner

        spinner = "dots" if self._shown is UNICODE_MARKS else "line"
        with self._lock:
            running = list(self._running.items())
        now = time.monotonic()
        return Group(*(Spinner(spinner, text=f"{name} {now - start:.0f} s" + (f" (attempt {attempt})" if attempt > 1
                                                                                else ""))
                       for name, (start, attempt) in running))

    def started(self, name: str, attempt: int) -> None:
        with self._lock:
            start = self._running.get(name, (time.monotonic(), attempt))[0]
            self._running[name] = (start, attempt)

    def ended(self, stage: StageResult) -> None:
        with self._lock:
            self._running.pop(stage.name, None)
        if stage.outcome in (Outcome.FAILED, Outcome.INTERRUPTED):
            mark = self._shown["failed"]
        else:
            mark = self._shown["warned"] if stage.warnings else self._shown["passed"]
        word = "" if stage.outcome is Outcome.PASSED else f" {stage.outcome.value}"
        self._console.print(f"{mark} {stage.name}{word} {stage.duration_s:.1f} s", markup=False)


# The process's live display while `meshid run` shows one (`live_stages`): the stage tasks report to it from their
# threads; without one (not a TTY, --verbose, a fleet, a worker) they report to nothing.
_live: LiveStages | None = None


@contextmanager
def live_stages(stream: TextIO) -> Iterator[None]:
    """Show the running stages on `stream` (a terminal) while the block runs."""
    global _live
    display = LiveStages(stream)
    with display.live:
        _live = display
        try:
            yield
        finally:
            _live = None


def stage_started(name: str, attempt: int) -> None:
    """Stage `name` started attempt `attempt` (shown when a live display is on)."""
    if _live is not None:
        _live.started(name, attempt)


def stage_ended(stage: StageResult) -> None:
    """A stage ended with `stage` (shown when a live display is on)."""
    if _live is not None:
        _live.ended(stage)
