"""Session fixtures: one sandbox cluster (with its chart repository and emulator) shared by the whole run; a meshid
home of a test's own, whose background Prefect server the test stops."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PRIVATE_NETNS_HINT = (
    "sandbox tests must run in a private network namespace with only loopback (`make test` does this); "
    "set MESHID_ALLOW_HOST_NETWORK=1 to override"
)


def in_private_netns() -> bool:
    """Only loopback in this process's network namespace (/proc/net/dev is per namespace; sysfs is not remounted)."""
    with open("/proc/net/dev") as dev:
        return [line.split(":")[0].strip() for line in dev.readlines()[2:]] == ["lo"]


def require_private_netns() -> None:
    """Fail the test unless it runs in a private network namespace (or MESHID_ALLOW_HOST_NETWORK=1)."""
    if not in_private_netns() and os.environ.get("MESHID_ALLOW_HOST_NETWORK") != "1":
        pytest.fail(PRIVATE_NETNS_HINT)


@pytest.fixture(scope="session")
def sandbox_cluster() -> Iterator[object]:
    """A running sandbox with two nodes and a fast emulator tick, torn down at the end of the session."""
    require_private_netns()
    from sandbox import lifecycle

    info = lifecycle.up(f"pytest-{os.getpid()}", nodes=2, tick_s=0.5)
    try:
        yield info
    finally:
        lifecycle.down(info.name)


@pytest.fixture(scope="session")
def chart_repo_url(sandbox_cluster) -> str:
    """URL of the sandbox's chart repository (index.yaml + packaged charts on 127.0.0.1)."""
    return sandbox_cluster.chart_repo_url


@pytest.fixture(scope="session")
def kubeconfig(sandbox_cluster) -> Path:
    """Path of the session sandbox's kubeconfig."""
    return sandbox_cluster.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig):
    """An official-client ApiClient for the session sandbox (no global kube configuration)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


@contextmanager
def isolated_meshid_home(path: Path) -> Iterator[Path]:
    """A meshid home of its own at `path`, with the built binaries linked in: its sandboxes and its background Prefect
    server are the test's. At the end, also when the test failed, the server is stopped, and so is any process still
    working in the server's folder (one a lost pid file no longer names); a test that left one fails."""
    from meshid.prefectserver import BackgroundServer
    from sandbox import binaries

    path.mkdir(parents=True, exist_ok=True)
    (path / "bin").symlink_to(binaries.home() / "bin")
    server = BackgroundServer(path)
    try:
        yield path
    finally:
        server.stop()
        left = working_in(server.folder)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not left, f"processes left working in {server.folder}: {left}"


def working_in(folder: Path) -> list[int]:
    """Pids of the processes whose working directory is `folder` (a background Prefect server works in its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cwd").resolve() == folder.resolve():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def wait_gone(pid: int, within_s: float = 15) -> bool:
    """Whether process `pid` is gone (or a zombie) within `within_s`."""
    from sandbox import processes

    deadline = time.monotonic() + within_s
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not processes.alive(pid)
