"""What the warm engine (`flows/engine_server.py`) does once, before it serves, so that the runs it forks do not.

Measured in a profile of the runs a warm engine forked (8 fleet targets, dispatch workers), each run spent about
0.25 CPU s importing modules the server had not, 0.2 s on Prefect's logging configuration, and 0.06 s building
pydantic schemas that Prefect's models defer to their first use.
- `import_what_runs_import`: the deployments' entrypoint modules (prefect.yaml names them as modules, so Prefect
  imports them, and a module imported here is not run again), and what Prefect and meshid import only once a run
  needs it.
- `complete_models`: every pydantic model that deferred its schema builds it here.
- `reuse_logging_config`: Prefect's `load_logging_config` renders every setting as an environment variable to fill
  in its template. A run whose inputs to it are the server's (the template, the values of the settings it names,
  the environment variables that override a value of it) gets a copy of the server's result; any other run,
  Prefect's own. `setup_logging` then configures the run's handlers from it as always.
"""

from __future__ import annotations

import copy
import importlib
import os
import string
from pathlib import Path
from typing import Any

# the modules of prefect.yaml's entrypoints; then what runs import lazily: Prefect's pull steps, task submission
# (visualization) and task engine, its concurrency client, anyio's asyncio backend, and meshid's pod exec and port
# forward (meshid/kube.py imports them at their first use)
WARM_IMPORTS = (
    "flows.fleet", "flows.guide", "flows.target",
    "prefect.deployments.steps", "prefect.task_engine", "prefect.utilities.visualization",
    "prefect.concurrency.asyncio", "anyio._backends._asyncio", "meshid.podexec", "meshid.portforward",
)


def warm_up() -> None:
    """All of it, in the order it depends on (the models and the logging configuration of what was imported)."""
    import_what_runs_import()
    complete_models()
    reuse_logging_config()


def import_what_runs_import() -> None:
    for name in WARM_IMPORTS:
        importlib.import_module(name)


def complete_models() -> int:
    """Build the schema of every pydantic model whose schema is deferred; returns how many were built."""
    import pydantic

    found, todo = set(), [pydantic.BaseModel]
    while todo:
        for subclass in todo.pop().__subclasses__():
            if subclass not in found:
                found.add(subclass)
                todo.append(subclass)
    built = 0
    for model in found:
        # one whose forward references are not defined yet stays as it was: its first use builds it
        if not model.__pydantic_complete__ and model.model_rebuild(raise_errors=False):
            built += 1
    return built


def logging_inputs(path: Path) -> tuple | None:
    """What Prefect's `load_logging_config(path)` fills its template with (prefect/logging/configuration.py): the
    template and the values of the settings it names; None if the template names something that is not a Prefect
    setting."""
    import prefect.settings
    from prefect.settings.legacy import Setting

    text = path.read_text()
    values = []
    for name in string.Template(text).get_identifiers():
        setting = getattr(prefect.settings, name, None)
        if not isinstance(setting, Setting):
            return None
        values.append((name, str(setting.value())))
    return str(path), text, tuple(values)


def override_names(config: dict[str, Any]) -> list[str]:
    """The environment variables `load_logging_config` overrides a value of `config` with, sorted: PREFECT_LOGGING_
    and the value's key path (PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL), named by Prefect's own `to_envvar`. Other
    PREFECT_LOGGING_* settings (the API batch interval) do not change the configuration."""
    from prefect.logging.configuration import to_envvar
    from prefect.utilities.collections import dict_to_flatdict

    return sorted({to_envvar("PREFECT_LOGGING_" + "_".join(key)).upper() for key in dict_to_flatdict(config)})


def reuse_logging_config() -> None:
    """Load this process's logging configuration once, and have `load_logging_config` hand a copy of it to every later
    call (in this process or a child forked from it) whose template inputs and overrides are the same."""
    from prefect.logging import configuration

    load = configuration.load_logging_config
    path = configuration.PREFECT_LOGGING_SETTINGS_PATH.value()  # as `setup_logging` chooses its template
    path = path if path.exists() else configuration.DEFAULT_LOGGING_SETTINGS_PATH
    inputs = logging_inputs(path)
    if inputs is None:
        return
    loaded = load(path)
    names = override_names(loaded)

    def overrides() -> tuple[tuple[str, str], ...]:
        return tuple((name, os.environ[name]) for name in names if os.environ.get(name))

    overridden = overrides()

    def load_logging_config(path: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not args and not kwargs and logging_inputs(path) == inputs and overrides() == overridden:
            return copy.deepcopy(loaded)  # (a later Prefect's new arguments get its own function)
        return load(path, *args, **kwargs)

    configuration.load_logging_config = load_logging_config
