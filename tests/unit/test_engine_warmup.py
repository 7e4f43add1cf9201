"""flows/engine_warmup.py: what the warm engine does once for its runs gives them what they would have made
themselves."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pydantic
import pytest
import yaml

from flows import engine_warmup

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def logging_config(monkeypatch):
    """Prefect's logging configuration module; after the test, its `load_logging_config`, the environment and
    Prefect's settings as they were before it."""
    from prefect.logging import configuration

    monkeypatch.setattr(configuration, "load_logging_config", configuration.load_logging_config)
    yield configuration
    monkeypatch.undo()
    _refresh_settings()


def _refresh_settings() -> None:
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


def test_every_entrypoint_module_is_imported_by_the_warm_engine():
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    modules = {d["entrypoint"].split(":")[0] for d in deployments}
    assert modules == {"flows.fleet", "flows.guide", "flows.target"}
    assert modules <= set(engine_warmup.WARM_IMPORTS)
    for name in engine_warmup.WARM_IMPORTS:
        importlib.import_module(name)


def test_a_run_with_the_servers_inputs_gets_the_servers_configuration_and_any_other_its_own(
        logging_config, monkeypatch):
    prefects_own = logging_config.load_logging_config
    path = logging_config.DEFAULT_LOGGING_SETTINGS_PATH
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")
    _refresh_settings()
    engine_warmup.reuse_logging_config()
    assert logging_config.load_logging_config is not prefects_own

    reused = logging_config.load_logging_config(path)
    assert reused == prefects_own(path)
    reused["loggers"]["prefect"]["level"] = "changed by setup_logging"  # a copy: the next run gets it unchanged
    assert logging_config.load_logging_config(path) == prefects_own(path)

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "DEBUG")  # a setting the template names
    _refresh_settings()
    assert logging_config.load_logging_config(path)["loggers"]["prefect"]["level"] == "DEBUG"
    assert logging_config.load_logging_config(path) == prefects_own(path)

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")  # an override from the environment
    _refresh_settings()
    assert logging_config.load_logging_config(path)["handlers"]["console"]["level"] == "ERROR"


def test_only_the_environment_that_changes_the_configuration_makes_a_run_load_its_own(logging_config, monkeypatch):
    prefects_own, loads = logging_config.load_logging_config, []

    def counted(path, *args, **kwargs):
        loads.append(path)
        return prefects_own(path, *args, **kwargs)

    monkeypatch.setattr(logging_config, "load_logging_config", counted)
    engine_warmup.reuse_logging_config()
    assert len(loads) == 1  # the server's own
    path = logging_config.DEFAULT_LOGGING_SETTINGS_PATH

    monkeypatch.setenv("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "10")  # read by the API handler, not the configuration
    _refresh_settings()
    assert logging_config.load_logging_config(path) == prefects_own(path)
    assert len(loads) == 1

    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")  # a value of the configuration
    assert logging_config.load_logging_config(path)["handlers"]["console"]["level"] == "ERROR"
    assert len(loads) == 2


def test_a_template_of_the_users_own_is_read_as_it_is_now(logging_config, tmp_path, monkeypatch):
    template = tmp_path / "logging.yml"
    template.write_text(logging_config.DEFAULT_LOGGING_SETTINGS_PATH.read_text())
    monkeypatch.setenv("PREFECT_LOGGING_SETTINGS_PATH", str(template))
    _refresh_settings()
    engine_warmup.reuse_logging_config()
    first = copy.deepcopy(logging_config.load_logging_config(template))
    template.write_text(template.read_text() + "\nextra_key: 1\n")
    changed = logging_config.load_logging_config(template)
    assert changed["extra_key"] == 1 and "extra_key" not in first


def test_a_template_that_names_no_setting_is_left_to_prefect(tmp_path):
    template = tmp_path / "logging.yml"
    template.write_text("version: 1\nroot:\n  level: ${NOT_A_PREFECT_SETTING}\n")
    assert engine_warmup.logging_inputs(template) is None


def test_deferred_models_are_built():
    class Deferred(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(defer_build=True)
        name: str

    assert not Deferred.__pydantic_complete__
    assert engine_warmup.complete_models() >= 1
    assert Deferred.__pydantic_complete__
    assert Deferred(name="x").name == "x"
