"""Find command-line tools: on PATH first, then in meshid's own tool folder (`<home>/bin/current`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def find(name_or_path: str, home: Path) -> str:
    """The executable to run for `name_or_path`; the name itself when it is found nowhere (the call then fails
    with a clear "not found")."""
    if os.sep in name_or_path:
        return name_or_path
    return shutil.which(name_or_path) or shutil.which(name_or_path, path=str(home / "bin" / "current")) or name_or_path
