"""Providers: mapping targets to providers, context validation, private kubeconfigs, preflight without tools."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from meshid.errors import ExternalCallError, InputError
from meshid.models import Target
from meshid.providers import provider_for
from meshid.providers.base import docker_engine_check
from meshid.providers.context import ContextProvider
from meshid.providers.kind import KindProvider
from meshid.providers.minikube import MinikubeProvider
from meshid.providers.sandbox import SandboxProvider
from meshid.settings import MeshidSettings

TOKEN = "s3cr3t-token-value-0123456789"


@pytest.fixture
def settings() -> MeshidSettings:
    return MeshidSettings()


def _kubeconfig(server: str = "https://127.0.0.1:1", context: str = "dev") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
    })


@pytest.mark.parametrize("provider, cls", [("sandbox", SandboxProvider), ("minikube", MinikubeProvider),
                                           ("kind", KindProvider)])
def test_provider_for_maps_each_provider(provider, cls, settings, tmp_path):
    chosen = provider_for(Target(provider=provider, cluster="zone-1"), settings, tmp_path)
    assert type(chosen) is cls and chosen.cluster == "zone-1" and chosen.cluster_field == "target.cluster"


def test_provider_for_context_uses_the_kubeconfig_file(settings, tmp_path):
    path = tmp_path / "kc.yaml"
    path.write_text(_kubeconfig())
    chosen = provider_for(Target(provider="context", kubeconfig=path), settings, tmp_path)
    assert isinstance(chosen, ContextProvider) and chosen.kubeconfig == path
    assert chosen.validate() == "dev"
    assert chosen.preflight() == [(True, f"kubeconfig {path} has context dev")]


def test_a_kubeconfig_for_a_provider_that_creates_its_cluster_is_bad_input(settings, tmp_path):
    with pytest.raises(InputError) as err:
        provider_for(Target(provider="kind", kubeconfig_secret_block="kc"), settings, tmp_path, _kubeconfig())
    assert err.value.field == "target.kubeconfig_secret_block" and TOKEN not in str(err.value)


def test_minikube_and_kind_commands_keep_the_kubeconfig_in_the_workdir(settings, tmp_path):
    minikube = provider_for(Target(provider="minikube"), settings, tmp_path)
    assert minikube.create_argv(300)[:5] == ["minikube", "start", "-p", "mesh-zone", "--driver=docker"]
    assert minikube.cli_env() == {"KUBECONFIG": str(tmp_path / "minikube-mesh-zone.kubeconfig")}
    assert (minikube.context(), minikube.leftover_network()) == ("mesh-zone", "mesh-zone")
    kind = provider_for(Target(provider="kind", name="zone-a"), settings, tmp_path)
    assert kind.create_argv(300) == ["kind", "create", "cluster", "--name", "zone-a", "--kubeconfig",
                                     str(tmp_path / "kind-zone-a.kubeconfig"), "--wait", "300s"]
    assert (kind.context(), kind.leftover_network()) == ("kind-zone-a", None)


def test_unknown_context_is_bad_input_naming_target_context(settings, tmp_path):
    path = tmp_path / "kc.yaml"
    path.write_text(_kubeconfig())
    chosen = provider_for(Target(provider="context", kubeconfig=path, context="prod"), settings, tmp_path)
    assert chosen.preflight()[0][0] is False
    with pytest.raises(InputError) as err:
        chosen.start(5)
    assert err.value.field == "target.context" and "'prod'" in err.value.problem and "dev" in err.value.problem


def test_unreadable_kubeconfig_is_bad_input_naming_target_kubeconfig(settings, tmp_path):
    chosen = provider_for(Target(provider="context", kubeconfig=tmp_path / "missing.yaml"), settings, tmp_path)
    with pytest.raises(InputError) as err:
        chosen.start(5)
    assert err.value.field == "target.kubeconfig"


def test_secret_block_kubeconfig_is_private_and_its_token_never_shows(settings, tmp_path):
    target = Target(provider="context", kubeconfig_secret_block="prod-kubeconfig", context="nope")
    chosen = provider_for(target, settings, tmp_path / "run", _kubeconfig())
    written = tmp_path / "run" / "context-mesh-zone.kubeconfig"
    assert chosen.kubeconfig == written and TOKEN in written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    with pytest.raises(InputError) as err:
        chosen.start(5)
    assert err.value.field == "target.context" and TOKEN not in str(err.value)


def test_unparsable_secret_block_names_the_block(settings, tmp_path):
    target = Target(provider="context", kubeconfig_secret_block="prod-kubeconfig")
    chosen = provider_for(target, settings, tmp_path, f"token: {TOKEN}\n  - [unbalanced")
    with pytest.raises(InputError) as err:
        chosen.start(5)
    assert err.value.field == "target.kubeconfig_secret_block" and "prod-kubeconfig" in err.value.problem
    assert TOKEN not in str(err.value)


def test_unreachable_api_is_a_transient_call_error_without_the_token(settings, tmp_path):
    chosen = provider_for(Target(provider="context", kubeconfig_secret_block="kc"), settings, tmp_path,
                          _kubeconfig(server="https://127.0.0.1:1"))
    with pytest.raises(ExternalCallError) as err:
        chosen.start(5)
    assert err.value.transient and TOKEN not in str(err.value)


def test_invalid_sandbox_name_is_bad_input_before_anything_starts(settings, tmp_path):
    with pytest.raises(InputError) as err:
        provider_for(Target(cluster="Not_A_Label"), settings, tmp_path).start(5)
    assert err.value.field == "target.cluster" and "DNS-1123" in err.value.problem


@pytest.fixture
def docker_only_path(tmp_path, monkeypatch) -> Path:
    """PATH holding only the docker CLI (no minikube, no kind), pointed at an engine that is not there."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(docker)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return bin_dir


@pytest.mark.parametrize("provider", ["minikube", "kind"])
def test_preflight_reports_missing_binary_and_unreachable_docker_engine(provider, settings, tmp_path,
                                                                        docker_only_path):
    (binary_ok, binary_msg), (engine_ok, engine_msg) = provider_for(
        Target(provider=provider), settings, tmp_path).preflight()
    assert not binary_ok and binary_msg == f"{provider} not found on PATH: install {provider} or add it to PATH"
    assert not engine_ok and engine_msg.startswith("Docker engine not reachable")
    assert "Cannot connect to the Docker daemon" in engine_msg and "start Docker" in engine_msg


def test_preflight_reports_a_missing_docker_cli(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    ok, message = provider_for(Target(provider="kind"), settings, tmp_path).preflight()[1]
    assert not ok and "docker CLI is not on PATH" in message


def test_a_hanging_docker_engine_check_gives_up_after_its_timeout(tmp_path, monkeypatch):
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexec sleep 5\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    ok, message = docker_engine_check(timeout_s=0.5)
    assert not ok and "timed out after 0.5s" in message
