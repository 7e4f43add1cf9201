"""The garbage collector paused while a process imports: `collector_paused`."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the garbage collector while a process imports (and validates), then freeze the objects that built.

    Importing prefect, the kubernetes client and the flows builds about 200,000 long-lived objects (classes, pydantic
    schemas), and the collector's passes over them during the import cost a fifth of its CPU. Frozen, they are also
    skipped by every later collection of the process.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
