"""Names meshid derives from free text: Prefect artifact keys, run ids, cluster lock names, file names."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    """Lowercase letters, digits and '-' only (Prefect artifact keys, file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
