"""What a finished Prefect task or flow run left: its value, or why there is none."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Hashable, Mapping
from typing import TypeVar

from prefect.futures import PrefectFuture
from prefect.states import State

from meshid.stages.runner import describe

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def value_or_why(finished: PrefectFuture | State, kind: type[T] | tuple[type, ...]) -> T | str:
    """The value of a finished future or state when it is a `kind`; else why there is none: the exception the run
    raised, described, or the final state's message."""
    value = finished.result(raise_on_failure=False)
    if isinstance(value, kind):
        return value
    state = finished.state if isinstance(finished, PrefectFuture) else finished
    return describe(value) if isinstance(value, BaseException) else str(state.message)


def first_done(running: Mapping[K, PrefectFuture], timeout_s: float) -> list[K]:
    """Wait until one of the running futures is done, or `timeout_s` (so the caller can look for a stop request);
    the keys of those done, in the mapping's order."""
    concurrent.futures.wait([f.wrapped_future for f in running.values()], timeout=timeout_s,
                            return_when=concurrent.futures.FIRST_COMPLETED)
    return [key for key, future in running.items() if future.wrapped_future.done()]
