"""A real `prefect server start` on 127.0.0.1 (PREFECT_HOME in tmp) for the deployment tests, a CLI runner for it,
and the project's deployments deployed to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_S = 120
EXPECTED = {
    "fleet/nightly-validation": ("flows/fleet.py:fleet", ["0 2 * * *", "Europe/Berlin"]),
    "fleet/fleet-rollout": ("flows/fleet.py:fleet", []),
    "guide/guide-manual": ("flows/guide.py:guide", []),
}


@dataclass(frozen=True)
class Server:
    """A running Prefect server: its URLs and the environment that points a process at it."""

    url: str
    api_url: str
    env: dict[str, str]
    log: Path

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (`prefect`, `python`) from the project directory against this server."""
        cmd = [str(BIN / argv[0]), *argv[1:]]
        done = subprocess.run(cmd, cwd=PROJECT, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, api_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {STARTUP_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory) -> Iterator[Server]:
    """`prefect server start` for this test package, stopped (its whole process group) at the end.

    Package scope rather than session: the server is only for these tests and need not idle through the rest.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home, runs = tmp_path_factory.mktemp("prefect-home"), tmp_path_factory.mktemp("runs")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"{url}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO",
           "MESHID_RUNS_DIR": str(runs), "MESHID_SANDBOX_TICK_S": "0.5"}
    log = home / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(proc, f"{url}/api", log)
        with temporary_settings({PREFECT_API_URL: f"{url}/api", PREFECT_HOME: str(home)}):
            yield Server(url=url, api_url=f"{url}/api", env=env, log=log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="package")
def deployed(prefect_server) -> dict[str, object]:
    """Setup and `prefect --no-prompt deploy --all` from the project directory; the deployments by name."""
    from prefect.client.orchestration import get_client

    from tests.conftest import require_private_netns

    require_private_netns()
    before = (PROJECT / "prefect.yaml").read_bytes()
    first = prefect_server.run("python", "-m", "deployments.setup").stdout
    assert "work pool meshid (process): created" in first and "meshid-fleet (4): created" in first
    assert "SKIPPED, no --notify-block given" in first and "--notify-block meshid-alerts" in first
    again = prefect_server.run("python", "-m", "deployments.setup").stdout
    assert "work pool meshid (process): exists" in again and "meshid-fleet (4): exists" in again
    prefect_server.run("prefect", "--no-prompt", "deploy", "--all")
    assert (PROJECT / "prefect.yaml").read_bytes() == before, "deploy must not rewrite prefect.yaml"
    with get_client(sync_client=True) as client:
        return {name: client.read_deployment_by_name(name) for name in EXPECTED}
