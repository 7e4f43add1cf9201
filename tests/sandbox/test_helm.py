"""helm works against the sandbox and its local chart repository, as the guide uses it."""

from __future__ import annotations

import os
import subprocess
import uuid

import httpx
import yaml
from kubernetes import client

from sandbox import binaries

HELM_TIMEOUT_S = 180


def _helm(args: list[str], kubeconfig, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_CACHE_HOME": str(tmp_path / "cache"),
           "HELM_DATA_HOME": str(tmp_path / "data"), "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([str(binaries.bin_dir() / "helm"), *args], env=env, capture_output=True, text=True,
                          timeout=HELM_TIMEOUT_S)


def test_chart_repository_serves_an_index_of_every_chart(chart_repo_url):
    index = yaml.safe_load(httpx.get(f"{chart_repo_url}/index.yaml", timeout=10).text)
    assert "hello" in index["entries"]
    url = index["entries"]["hello"][0]["urls"][0]
    tgz = httpx.get(url if "://" in url else f"{chart_repo_url}/{url}", timeout=10)
    assert tgz.status_code == 200 and tgz.content[:2] == b"\x1f\x8b"


def test_helm_install_wait_from_the_local_repository_then_uninstall_cleans_up(api_client, kubeconfig,
                                                                              chart_repo_url, tmp_path):
    ns = f"h-{uuid.uuid4().hex[:6]}"
    added = _helm(["repo", "add", "local", chart_repo_url], kubeconfig, tmp_path)
    assert added.returncode == 0, added.stderr
    assert _helm(["repo", "update"], kubeconfig, tmp_path).returncode == 0
    done = _helm(["upgrade", "--install", "--create-namespace", "--namespace", ns, "demo", "local/hello",
                  "--wait", "--timeout", "120s"], kubeconfig, tmp_path)
    assert done.returncode == 0, done.stderr
    dep = client.AppsV1Api(api_client).read_namespaced_deployment("demo-hello", ns)
    assert dep.status.available_replicas == 2

    again = _helm(["upgrade", "--install", "--namespace", ns, "demo", "hello", "--repo", chart_repo_url,
                   "--set", "replicas=1", "--wait", "--timeout", "120s"], kubeconfig, tmp_path)
    assert again.returncode == 0, again.stderr
    status = _helm(["status", "demo", "-n", ns, "-o", "json"], kubeconfig, tmp_path)
    assert '"version":2' in status.stdout.replace(" ", "")

    gone = _helm(["uninstall", "demo", "-n", ns, "--wait", "--timeout", "60s"], kubeconfig, tmp_path)
    assert gone.returncode == 0, gone.stderr
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    assert apps.list_namespaced_deployment(ns).items == []
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items
            if c.metadata.name.startswith("demo-")] == []
    assert core.list_namespaced_service(ns).items == []
    core.delete_namespace(ns)
