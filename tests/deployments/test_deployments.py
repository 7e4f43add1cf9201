"""Against the stack (a Prefect server on PostgreSQL, two process workers): setup, `prefect deploy --all`,
automations that notify, the nightly trend read back from earlier runs, a worker running `guide-manual`, and the
run's summary in the Prefect UI (Chromium)."""

from __future__ import annotations

import html
import http.server
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from tests.deployments.conftest import EXPECTED, PROJECT
from tests.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_deploy_registers_the_four_deployments_with_schedules_and_parameters(deployed):
    for name, (entrypoint, schedule) in EXPECTED.items():
        dep = deployed[name]
        assert (dep.entrypoint, dep.work_pool_name) == (entrypoint, "meshid"), name
        assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT)}}]
        assert dep.job_variables["command"] == "python -m flows.engine", name  # one process per run
        assert [[s.schedule.cron, s.schedule.timezone] for s in dep.schedules] == ([schedule] if schedule else [])
    nightly, rollout = deployed["fleet/nightly-validation"], deployed["fleet/fleet-rollout"]
    assert nightly.schedules[0].active
    spec = nightly.parameters["spec"]
    assert spec["mode"] == "validate" and len(spec["trust_domains"]) == 2 and spec["dispatch"] == "workers"
    assert {t["provider"] for t in spec["targets"]} == {"sandbox"}
    assert rollout.parameters["spec"]["mode"] == "rollout" and rollout.parameters["spec"]["approval"] is True
    assert rollout.parameters["spec"]["dispatch"] == "workers"
    target = deployed["fleet-target/fleet-target"]
    assert target.parameters == {} and {"params", "mode", "lock_lease_s"} <= set(
        target.parameter_openapi_schema["properties"])
    fewer_requests = {"PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "10", "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false"}
    assert target.job_variables["env"] == {**nightly.job_variables["env"], **fewer_requests}
    assert not fewer_requests.keys() & nightly.job_variables["env"].keys()
    assert rollout.global_concurrency_limit.limit == 1
    assert rollout.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert deployed["guide/guide-manual"].parameters == {}
    assert "params" in deployed["guide/guide-manual"].parameter_openapi_schema["properties"]


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP endpoint that records the JSON bodies posted to it."""
    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()


def _next_message(received: list[dict], seen: int, wait_s: float) -> dict | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if len(received) > seen:
            return received[seen]
        time.sleep(0.5)
    return None


def test_nightly_failure_and_recovery_notify_through_the_configured_block(deployed, prefect_server, webhook):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.states import Completed, Crashed, Failed, Running

    url, received = webhook
    CustomWebhookNotificationBlock(name="meshid", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
                                   ).save("meshid-alerts", overwrite=True)
    out = prefect_server.run("python", "-m", "deployments.setup", "--notify-block", "meshid-alerts").stdout
    assert "'meshid nightly failed': created" in out and "'meshid nightly recovered': created" in out
    out = prefect_server.run("python", "-m", "deployments.setup", "--notify-block",
                             "custom-webhook/meshid-alerts").stdout
    assert "'meshid nightly failed': updated" in out
    nightly, manual = deployed["fleet/nightly-validation"], deployed["guide/guide-manual"]
    with get_client(sync_client=True) as client:
        def finish(deployment_id, state) -> str:
            run = client.create_flow_run_from_deployment(deployment_id)
            client.set_flow_run_state(run.id, Running(), force=True)
            client.set_flow_run_state(run.id, state, force=True)
            return run.name

        for deployment_id, state, subject in ((nightly.id, Failed(message="boom"), "nightly-validation Failed"),
                                              (manual.id, Failed(), None), (nightly.id, Crashed(), "Crashed"),
                                              (nightly.id, Completed(), "recovered"), (nightly.id, Completed(), None)):
            seen = len(received)
            name = finish(deployment_id, state)
            message = _next_message(received, seen, 30 if subject else 8)
            if subject is None:
                assert message is None, f"unexpected notification {message}"
            else:
                assert message is not None, f"no notification for {name} ({state.name})"
                assert subject in message["subject"] and name in message["text"], message


def test_nightly_trend_reads_back_the_earlier_runs_of_the_deployment(deployed):
    from prefect import flow
    from prefect.artifacts import Artifact
    from prefect.flow_engine import run_flow

    from flows.trends import TREND_KEY, publish_trend

    @flow
    def nightly_probe(report: dict) -> None:
        publish_trend(report)

    def report(connectivity: str) -> dict:
        stages = [{"name": "install", "outcome": "passed", "duration_s": 3.0, "flaky": True},
                  {"name": "connectivity", "outcome": connectivity, "duration_s": 1.0, "flaky": False}]
        outcome = "passed" if connectivity == "passed" else "failed"
        return {"outcome": outcome, "results": [{"target": "a", "trust_domain": "x.org", "outcome": outcome,
                                                 "failed_stage": None, "duration_s": 4.0, "stages": stages}]}

    names = []
    with get_client(sync_client=True) as client:
        for connectivity in ("passed", "failed", "failed"):
            run = client.create_flow_run_from_deployment(deployed["fleet/nightly-validation"].id)
            assert run_flow(nightly_probe, flow_run=run, parameters={"report": report(connectivity)},
                            return_type="state").is_completed()
            names.append(run.name)
    text = Artifact.get(TREND_KEY).data
    assert f"failing for 2 night(s)**, since `{names[1]}`" in text and "1 of 3 night(s) green" in text
    assert "| connectivity | 33% | 1 | 2 | 0 |" in text and "`install` (3)" in text
    assert f"last green night `{names[0]}`" in text and "| a | x.org | connectivity | passed | failed |" in text
    assert Artifact.get(f"{TREND_KEY}-stages") is not None


@pytest.fixture(scope="module")
def manual_run(deployed, prefect_server) -> tuple[object, str]:
    """A `guide-manual` run on a throwaway sandbox, run to its end by the stack's worker of queue default."""
    target = f"wk-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployed["guide/guide-manual"].id, parameters={"params": {"target": {"name": target,
                                                                                 "provider": "sandbox"}}})
        finished = wait_for("the guide-manual run to end", lambda: (r := client.read_flow_run(run.id)).state
                            .is_final() and r, 600, prefect_server.logs)
    assert finished.state.is_completed(), f"{finished.state}\n{prefect_server.logs()}"
    assert finished.labels["prefect.worker.name"] == "meshid-default"
    return finished, target


def test_a_worker_runs_guide_manual_to_completion(manual_run):
    finished, target = manual_run
    assert finished.name == f"guide-{target}-default.default.mesh.local"
    assert finished.state.message == f"passed on {target} (default.default.mesh.local)"


def _chromium(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                           *action, url], capture_output=True, text=True, timeout=120)


def test_the_ui_shows_the_finished_runs_summary_artifact(manual_run, prefect_server, tmp_path, record_property):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install it (apt-get install chromium) to see the Prefect UI tested")
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    finished, target = manual_run
    key = f"{target}-default-default-mesh-local-summary"
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[finished.id])))
    url = f"{prefect_server.url}/artifacts/artifact/{artifact.id}"
    dom = _chromium(url, tmp_path / "profile", "--dump-dom")
    body = dom.stdout[dom.stdout.find("<body"):]
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))
    screenshot = tmp_path / "summary.png"
    shot = _chromium(url, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1280,1800")
    print(f"screenshot of {url}: {screenshot}")
    record_property("screenshot", str(screenshot))
    assert f"{target} / default.default.mesh.local: passed" in text, text[:3000]
    for stage in ("cluster-start", "connectivity-before-permission", "connectivity-after-permission", "cleanup"):
        assert f"{stage} passed" in text, stage
    assert finished.name in text and key in text
    assert screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
