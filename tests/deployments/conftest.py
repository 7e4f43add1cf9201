"""The stack (`python -m deployments.stack up`: PostgreSQL, a Prefect server on it, two process workers on queues
default and eu) in this test process's network namespace, with its own state dir and ports, stopped and removed at
the end; a CLI runner against it, and the project's deployments as the stack deployed them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployments.stack import WORKERS, Stack

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STACK_TIMEOUT_S = 900
EXPECTED = {
    "fleet/nightly-validation": ("flows.fleet:fleet", ["0 2 * * *", "Europe/Berlin"]),
    "fleet/fleet-rollout": ("flows.fleet:fleet", []),
    "guide/guide-manual": ("flows.guide:guide", []),
    "fleet-target/fleet-target": ("flows.target:fleet_target", []),
}


@dataclass(frozen=True)
class Server:
    """The running stack: its server's URLs, its state, and the environment that points a process at it."""

    url: str
    api_url: str
    env: dict[str, str]
    stack: Stack

    def run(self, *argv: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (`prefect`, `python`, `meshid`) from the project directory against the stack."""
        cmd = [str(BIN / argv[0]), *argv[1:]]
        done = subprocess.run(cmd, cwd=PROJECT, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def stack_command(self, command: str) -> subprocess.CompletedProcess[str]:
        """`python -m deployments.stack COMMAND` for this stack."""
        return self.run("python", "-m", "deployments.stack", command, "--state-dir", str(self.stack.state_dir),
                        "--api-port", str(self.stack.api_port), "--pg-port", str(self.stack.pg_port),
                        timeout=STACK_TIMEOUT_S)

    def worker_runs(self, name: str) -> Path:
        """Where a worker's runs keep their ledgers and reports (nothing the fleet's process sees)."""
        return self.stack.worker_dir(name) / "runs"

    def worker_log(self, name: str) -> Path:
        return self.stack.worker_dir(name) / "worker.log"

    def logs(self) -> str:
        """The last lines of both workers' logs, for a failure message."""
        return "\n".join(f"--- {name}\n{self.worker_log(name).read_text(errors='replace')[-3000:]}"
                         for name in WORKERS if self.worker_log(name).exists())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory) -> Iterator[Server]:
    """The stack for this test package (package scope: it need not idle through the other tests).

    Its state dir is under the project: PostgreSQL runs as the `postgres` user, who cannot enter pytest's
    root-only temporary folders."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from tests.conftest import require_private_netns

    require_private_netns()
    home, runs = tmp_path_factory.mktemp("prefect-home"), tmp_path_factory.mktemp("fleet-runs")
    stack = Stack(PROJECT / ".state" / f"pytest-{os.getpid()}", _free_port(), _free_port())
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": stack.api_url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO",
           "MESHID_RUNS_DIR": str(runs), "MESHID_SANDBOX_TICK_S": "0.5"}
    server = Server(url=stack.api_url.removesuffix("/api"), api_url=stack.api_url, env=env, stack=stack)
    try:
        started = time.monotonic()
        up = server.stack_command("up")
        assert up.stdout.splitlines()[-1] == f"PREFECT_API_URL={stack.api_url}", up.stdout
        for line in ("work pool meshid (process): created", "meshid-fleet (4): created",
                     "'meshid crash zombie runs': created"):  # a new database: the stack set it up
            assert line in up.stderr, up.stderr
        print(f"stack up in {time.monotonic() - started:.1f} s")
        with temporary_settings({PREFECT_API_URL: stack.api_url, PREFECT_HOME: str(home)}):
            yield server
    finally:
        server.run("python", "-m", "deployments.stack", "down", "--state-dir", str(stack.state_dir),
                   timeout=STACK_TIMEOUT_S, check=False)
        shutil.rmtree(stack.state_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def deployed(prefect_server) -> dict[str, object]:
    """What the stack set up and deployed, checked to be idempotent: setup and `prefect --no-prompt deploy --all`
    again from the project directory; the deployments by name."""
    from prefect.client.orchestration import get_client

    before = (PROJECT / "prefect.yaml").read_bytes()
    again = prefect_server.run("python", "-m", "deployments.setup").stdout
    assert "work pool meshid (process): exists" in again and "meshid-fleet (4): exists" in again
    assert "'meshid crash zombie runs': updated" in again
    assert "SKIPPED, no --notify-block given" in again and "--notify-block meshid-alerts" in again
    prefect_server.run("prefect", "--no-prompt", "deploy", "--all")
    assert (PROJECT / "prefect.yaml").read_bytes() == before, "deploy must not rewrite prefect.yaml"
    with get_client(sync_client=True) as client:
        return {name: client.read_deployment_by_name(name) for name in EXPECTED}
