"""Sandbox lifecycle: side-by-side clusters, real versions, clean teardown, and clear errors for bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from sandbox import lifecycle, processes
from sandbox.errors import InvalidName, PortInUse, SandboxExists, ToolchainMissing, UnknownSandbox

MESHID = [sys.executable, "-m", "cli"]


def _meshid(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHID, *args], capture_output=True, text=True, timeout=300, env=env)


def test_second_sandbox_runs_beside_the_first_and_down_leaves_nothing(sandbox_cluster):
    second = _meshid("sandbox", "up", "--name", "side", "--nodes", "1", "--tick", "0.5")
    assert second.returncode == 0, second.stderr
    kubeconfig = _meshid("sandbox", "kubeconfig", "--name", "side").stdout.strip()
    try:
        nodes = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "--no-headers"],
                               capture_output=True, text=True, timeout=30)
        assert nodes.returncode == 0 and " Ready " in nodes.stdout, nodes.stderr
        readyz = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "--raw", "/readyz"],
                                capture_output=True, text=True, timeout=30)
        assert readyz.stdout.strip() == "ok", readyz.stderr  # `up` returned only once the API server was ready
        version = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "version", "-o", "yaml"],
                                 capture_output=True, text=True, timeout=30)
        assert "gitVersion: v1.36." in version.stdout.split("serverVersion:")[1]
        assert lifecycle.get("side").api_url != sandbox_cluster.api_url
        status = _meshid("sandbox", "status").stdout
        assert "side" in status and sandbox_cluster.name in status
        again = _meshid("sandbox", "up", "--name", "side")
        assert again.returncode == 2 and "already up" in again.stderr
    finally:
        state_dir = lifecycle.get("side").state_dir
        assert _meshid("sandbox", "down", "--name", "side").returncode == 0
    assert processes.using(state_dir) == []
    assert not state_dir.exists()
    assert sandbox_cluster.running(), "taking one sandbox down must not touch another"


def test_api_server_that_never_answers_is_named_with_what_was_seen(sandbox_cluster):
    from kubernetes import config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    api = config.new_client_from_config(config_file=str(sandbox_cluster.kubeconfig))
    api.configuration.host = f"https://127.0.0.1:{closed_port}"
    try:
        with pytest.raises(lifecycle.StartFailed, match=r"waited 1 s for the API server's /readyz .* last: .*"
                                                        r"ConnectionRefusedError: Connection refused at https://127.0.0.1:"):
            lifecycle._wait_api_ready(api, time.monotonic() + 1, 1)
    finally:
        api.close()


def test_unknown_name_is_a_clear_error():
    with pytest.raises(UnknownSandbox, match="no sandbox named 'nope'.*meshid sandbox up --name nope"):
        lifecycle.get("nope")
    cli = _meshid("sandbox", "down", "--name", "nope")
    assert cli.returncode == 2 and "no sandbox named 'nope'" in cli.stderr


def test_invalid_name_is_rejected_before_anything_starts():
    with pytest.raises(InvalidName, match="DNS-1123"):
        lifecycle.up("Bad_Name")


def test_name_already_up_is_rejected(sandbox_cluster):
    with pytest.raises(SandboxExists, match="already up"):
        lifecycle.up(sandbox_cluster.name)


def test_port_clash_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is in use"):
            lifecycle.up("clash", api_port=port)
        cli = _meshid("sandbox", "up", "--name", "clash", "--api-port", str(port))
        assert cli.returncode == 2 and "in use" in cli.stderr


def test_missing_go_toolchain_is_named_when_binaries_must_be_built(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHID_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolchainMissing, match="Go toolchain is missing"):
        lifecycle.up("nogo")
    cli = _meshid("sandbox", "up", "--name", "nogo", env=dict(os.environ))
    assert cli.returncode == 2 and "Go toolchain is missing" in cli.stderr
    assert not (tmp_path / "sandboxes" / "nogo").exists()


def test_faults_and_traffic_commands_answer_for_a_running_sandbox(sandbox_cluster):
    name = sandbox_cluster.name
    faults = _meshid("sandbox", "faults", "--name", name, "--set", "tick_s=0.5")  # the session sandbox's own tick
    assert faults.returncode == 0, faults.stderr
    assert json.loads(faults.stdout)["tick_s"] == 0.5
    traffic = _meshid("sandbox", "traffic", "--name", name)
    assert traffic.returncode == 0 and isinstance(json.loads(traffic.stdout), list), traffic.stderr
    unknown = _meshid("sandbox", "traffic", "--name", "nope")
    assert unknown.returncode == 2 and "no sandbox named 'nope'" in unknown.stderr
