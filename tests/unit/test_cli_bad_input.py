"""`meshid run` rejects bad input with one clear error naming the field, exit 2, before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: "s3cr3t-token-value"}}]
contexts: [{name: only, context: {cluster: c, user: u}}]
current-context: only
"""


@pytest.fixture
def isolated(tmp_path):
    """An environment whose meshid home and runs folder are empty temp folders."""
    env = {**os.environ, "MESHID_HOME": str(tmp_path / "home"), "MESHID_RUNS_DIR": str(tmp_path / "runs")}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    return env, tmp_path, kubeconfig


@pytest.mark.parametrize(("args", "field", "says"), [
    (["--trust-domain", "Prod.Example.org"], "trust_domain", "uppercase"),
    (["--trust-domain", "prod.example.org."], "trust_domain", "ends with '.'"),
    (["--trust-domain", "a" * 256], "trust_domain", "at most 255"),
    (["--trust-domain", "spiffe://prod.example.org"], "trust_domain", "scheme"),
    (["--identity-path", "/ns/{{ .Namespce }}"], "identity_path", "unknown variable .Namespce"),
    (["--mtp-value", "prod.example.org/ns/x"], "permission.value", "spiffe://"),
    (["--provider", "context", "--kubeconfig", "/nonexistent/kubeconfig"], "target.kubeconfig", "cannot read"),
])
def test_bad_run_input_is_rejected_before_anything_starts(isolated, args, field, says):
    env, tmp_path, _ = isolated
    done = subprocess.run([sys.executable, "-m", "cli", "run", *args], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"meshid: {field}: ") and says in done.stderr and "Fix: " in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "sandboxes").exists() and not (tmp_path / "runs").exists()
    assert not (tmp_path / "home" / "prefect-server").exists(), "bad input starts no Prefect server either"


def test_unknown_context_is_named_and_no_secret_leaks(isolated):
    env, tmp_path, kubeconfig = isolated
    done = subprocess.run([sys.executable, "-m", "cli", "run", "--provider", "context", "--kubeconfig",
                           str(kubeconfig), "--context", "prod-eu-1"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 2
    assert "target.context: context 'prod-eu-1' is not in" in done.stderr and "only" in done.stderr
    assert "s3cr3t-token-value" not in done.stderr + done.stdout
    assert not (tmp_path / "runs").exists()


def test_unknown_provider_is_rejected_by_the_parser(isolated):
    env, _, _ = isolated
    done = subprocess.run([sys.executable, "-m", "cli", "run", "--provider", "docker-desktop"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "invalid choice: 'docker-desktop'" in done.stderr


def test_bad_setting_names_the_environment_variable(isolated):
    env, _, _ = isolated
    done = subprocess.run([sys.executable, "-m", "cli", "run"], capture_output=True, text=True, timeout=60,
                          env={**env, "MESHID_TRUST_DOMAIN": "Bad.Example"})
    assert done.returncode == 2 and done.stderr.startswith("meshid: MESHID_TRUST_DOMAIN: ")


def _fleet(env, tmp_path, *extra: str, api_url: str | None = None) -> subprocess.CompletedProcess[str]:
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text("trust_domains: [a.org]\ntargets:\n  - {name: a, provider: context, "
                          "kubeconfig: /only/on/the/worker, work_queue: eu}\n")
    env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return subprocess.run([sys.executable, "-m", "cli", "fleet", "--fleet-file", str(fleet_file), *extra],
                          capture_output=True, text=True, timeout=120, env=env)


def test_worker_dispatch_reads_no_kubeconfig_here_and_needs_a_reachable_api(isolated):
    env, tmp_path, _ = isolated
    local = _fleet(env, tmp_path)  # local dispatch reads the kubeconfig here, before anything runs
    assert local.returncode == 2 and "targets[0].kubeconfig: cannot read /only/on/the/worker" in local.stderr
    unset = _fleet(env, tmp_path, "--dispatch", "workers")
    assert unset.returncode == 2 and unset.stderr.startswith("meshid: dispatch: workers dispatch needs the Prefect "
                                                             "server the workers poll, and PREFECT_API_URL is unset")
    refused = _fleet(env, tmp_path, "--dispatch", "workers", api_url="http://127.0.0.1:9/api")
    assert refused.returncode == 2 and "dispatch: the Prefect API at http://127.0.0.1:9/api does not answer" \
        in refused.stderr and "Fix: " in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "runs").exists()
