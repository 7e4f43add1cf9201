"""Listings of the commands that print rows (`meshid sandbox status`, `meshid runs`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def print_rows(rows: list[dict], output: str, empty: str, columns: Sequence[str]) -> None:
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
