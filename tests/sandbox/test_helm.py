"""helm works against the sandbox and its local chart repository, as the guide uses it."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import httpx
import yaml
from kubernetes import client, config

from meshid.helm import Helm
from sandbox import binaries, chartrepo

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


def test_meshid_helm_reports_each_revision_it_installs_and_uninstall_says_whether_there_was_one(
        kubeconfig, chart_repo_url, tmp_path):
    ns = f"m-{uuid.uuid4().hex[:6]}"
    helm = Helm(kubeconfig, binary=str(binaries.bin_dir() / "helm"), home=tmp_path)
    assert helm.status("demo", ns) is None
    first = helm.upgrade_install("demo", "hello", ns, repo=chart_repo_url, version=None, timeout_s=120)
    assert (first.name, first.namespace, first.revision, first.status) == ("demo", ns, 1, "deployed")
    assert first.chart.startswith("hello-") and helm.status("demo", ns) == first
    second = helm.upgrade_install("demo", "hello", ns, repo=chart_repo_url, version=None, values=["replicas=1"],
                                  timeout_s=120)
    assert second.revision == 2 and helm.status("demo", ns) == second
    assert helm.uninstall("demo", ns, timeout_s=60) is True
    assert helm.uninstall("demo", ns, timeout_s=60) is False
    client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig))).delete_namespace(ns)


def test_upgrades_and_rollbacks_take_over_fields_another_manager_set_and_client_side_releases_still_work(
        api_client, kubeconfig, chart_repo_url, tmp_path):
    # what the spire chart's post-install hook does to its webhook (`kubectl patch`), here on the hello chart's
    # ConfigMap: helm 4's server-side apply then refuses the next upgrade unless it forces the conflict
    ns = f"c-{uuid.uuid4().hex[:6]}"
    helm = Helm(kubeconfig, binary=str(binaries.bin_dir() / "helm"), home=tmp_path)
    core = client.CoreV1Api(api_client)
    try:
        helm.upgrade_install("demo", "hello", ns, repo=chart_repo_url, version=None, timeout_s=120, wait=False)
        core.patch_namespaced_config_map("demo-hello", ns, {"data": {"message": "patched"}},
                                         field_manager="kubectl-patch")
        second = helm.upgrade_install("demo", "hello", ns, repo=chart_repo_url, version=None, timeout_s=120,
                                      wait=False, values=["message=upgraded"])
        assert second.revision == 2
        assert core.read_namespaced_config_map("demo-hello", ns).data["message"] == "upgraded"
        core.patch_namespaced_config_map("demo-hello", ns, {"data": {"message": "patched again"}},
                                         field_manager="kubectl-patch")
        helm.rollback("demo", ns, 1, timeout_s=120)  # what cleanup and a rollout's rollback do
        assert core.read_namespaced_config_map("demo-hello", ns).data["message"] == "hello from the sandbox chart " \
                                                                                    "repository"

        installed = _helm(["upgrade", "--install", "--namespace", ns, "old", "hello", "--repo", chart_repo_url,
                           "--server-side=false"], kubeconfig, tmp_path)
        assert installed.returncode == 0, installed.stderr
        before = helm.status("old", ns)
        assert before is not None and before.client_side
        again = helm.upgrade_install("old", "hello", ns, repo=chart_repo_url, version=None, timeout_s=120,
                                     wait=False, client_side=before.client_side)
        assert again.revision == 2 and again.client_side  # helm kept the client-side apply it was installed with
        helm.rollback("old", ns, 1, timeout_s=120, client_side=True)
        assert helm.status("old", ns).revision == 3
    finally:
        core.delete_namespace(ns)


def test_chart_packages_are_built_once_per_content_and_rebuilt_when_a_chart_changes(tmp_path, monkeypatch):
    built_binaries = binaries.bin_dir()
    monkeypatch.setenv("MESHID_HOME", str(tmp_path / "home"))  # an empty package cache
    monkeypatch.setattr(binaries, "bin_dir", lambda: built_binaries)
    charts = tmp_path / "charts"
    shutil.copytree(chartrepo.CHARTS_DIR / "hello", charts / "hello")
    first = chartrepo.packaged(charts)
    built = (first / "index.yaml").stat().st_mtime_ns
    assert chartrepo.packaged(charts) == first and (first / "index.yaml").stat().st_mtime_ns == built
    assert "hello" in yaml.safe_load((first / "index.yaml").read_text())["entries"]

    chart_yaml = charts / "hello" / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text() + "\n# changed\n")
    changed = chartrepo.packaged(charts)
    assert changed != first and (changed / "index.yaml").is_file()
    assert not list(changed.parent.glob(".packaging-*")), "no temporary folder is left behind"
