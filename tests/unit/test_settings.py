"""Tests for meshid.settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from meshid.errors import InputError
from meshid.models import ProviderName
from meshid import LIBRARY_LOGGER
from meshid.settings import MeshidSettings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """No MESHID_* variables and no .env from the developer's shell leak into the tests, and the library's log level
    that load_settings sets is the one it was before."""
    for name in list(os.environ):
        if name.startswith("MESHID_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    library = logging.getLogger(LIBRARY_LOGGER)
    level = library.level
    yield
    library.setLevel(level)


def test_defaults():
    s = load_settings()
    assert s.home == Path.home() / ".cache" / "meshid"
    assert s.runs_dir == Path("runs")
    assert s.provider is ProviderName.SANDBOX
    assert s.trust_domain == "default.default.mesh.local"
    assert (s.helm_bin, s.log_level) == ("helm", "INFO")
    assert (s.api_timeout_s, s.sandbox_tick_s) == (30.0, 5.0)


def test_env_vars_and_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("MESHID_API_TIMEOUT_S=12\nMESHID_HELM_BIN=/opt/helm\nOTHER=1\n")
    monkeypatch.setenv("MESHID_HELM_BIN", "/usr/local/bin/helm")
    monkeypatch.setenv("MESHID_HOME", "~/meshid-home")
    monkeypatch.setenv("MESHID_LOG_LEVEL", "debug")
    monkeypatch.setenv("MESHID_PROVIDER", "kind")
    s = load_settings()
    assert s.helm_bin == "/usr/local/bin/helm"  # the environment wins over .env
    assert s.api_timeout_s == 12.0
    assert s.home == Path.home() / "meshid-home"
    assert s.log_level == "DEBUG" and s.provider is ProviderName.KIND


def test_log_level_sets_the_library_loggers(monkeypatch):
    monkeypatch.setenv("MESHID_LOG_LEVEL", "debug")
    load_settings()
    assert logging.getLogger("meshid.providers.base").getEffectiveLevel() == logging.DEBUG
    monkeypatch.setenv("MESHID_LOG_LEVEL", "WARNING")
    load_settings()
    assert not logging.getLogger("meshid.providers.base").isEnabledFor(logging.INFO)


def test_overrides_win():
    assert load_settings(sandbox_tick_s=0.5).sandbox_tick_s == 0.5


def test_bad_trust_domain_names_the_env_var(monkeypatch):
    monkeypatch.setenv("MESHID_TRUST_DOMAIN", "Bad.Example")
    with pytest.raises(InputError) as info:
        load_settings()
    assert info.value.field == "MESHID_TRUST_DOMAIN"
    assert str(info.value).startswith("MESHID_TRUST_DOMAIN: trust domain 'Bad.Example' contains uppercase")
    assert info.value.fix == "use lowercase: bad.example"


@pytest.mark.parametrize(
    "name,value",
    [("MESHID_API_TIMEOUT_S", "0"), ("MESHID_API_TIMEOUT_S", "soon"), ("MESHID_PROVIDER", "eks"),
     ("MESHID_LOG_LEVEL", "LOUD"), ("MESHID_SANDBOX_TICK_S", "-1")],
)
def test_other_bad_values_name_the_env_var(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(InputError) as info:
        load_settings()
    assert info.value.field == name and value in info.value.problem


def test_fields_have_descriptions():
    assert all(f.description for f in MeshidSettings.model_fields.values())
