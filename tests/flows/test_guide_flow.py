"""The guide flow on sandboxes: the happy path, the traps it must name, transient faults, cleanup."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.guide import guide
from meshid.kube import Cluster
from meshid.ledger import FILE, Ledger
from meshid.models import parse_params
from meshid.settings import load_settings
from sandbox import lifecycle

pytestmark = pytest.mark.prefect


def _run(tmp_path: Path, **params) -> tuple[object, dict]:
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    junit = report.with_suffix(".xml")
    state = guide(params=parse_params(params), json_report=str(report), junit_report=str(junit), return_state=True)
    return state, json.loads(report.read_text())


def _stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)


def _codes(stage: dict) -> list[str]:
    return [c["code"] for c in stage["checks"] if c["outcome"] == "failed"]


def _context_target(info, name: str) -> dict:
    return {"name": name, "provider": "context", "kubeconfig": str(info.kubeconfig)}


def _artifact(key: str):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found[0] if found else None


def _inputs(flow_run_id) -> dict[str, dict[str, set[str]]]:
    """Per stage task run of the flow run: each input (a parameter, `wait_for`) and the stages it came from."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    stage = {run.id: run.name.rsplit("-", 1)[0] for run in runs}  # task run names are `<task>-<suffix>`
    return {stage[run.id]: {key: {stage[i.id] for i in found if getattr(i, "id", None) in stage}
                            for key, found in run.task_inputs.items()} for run in runs}


def _leftovers(cluster: Cluster) -> list[str]:
    namespaces, _ = cluster.list("v1", "Namespace")
    mine = {"kong-mesh-system", "kong-mesh-demo", "spire"}
    return sorted(n["metadata"]["name"] for n in namespaces if n["metadata"]["name"] in mine
                  and not n["metadata"].get("deletionTimestamp"))


def test_guide_passes_with_defaults_on_a_throwaway_sandbox(tmp_path):
    state, report = _run(tmp_path, target={"name": "happy", "provider": "sandbox"})
    assert state.is_completed(), state.message
    assert report["outcome"] == "passed" and report["failed_stage"] is None
    assert [s["outcome"] for s in report["stages"]] == ["passed"] * 14
    before, after = _stage(report, "connectivity-before-permission"), _stage(report, "connectivity-after-permission")
    assert before["http"]["status"] == 500 and "failed to retrieve zone" in before["http"]["body"]
    body = json.loads(after["http"]["body"])
    assert after["http"]["status"] == 200 and body["counter"] >= 1 and body["zone"] == ""
    assert "MID031" in _codes(_stage(report, "register-spiffe-ids"))  # the guide's CR is ignored: a warning
    assert report["versions"]["kubernetes"].startswith("v1.36")
    assert "happy" not in [s.name for s in lifecycle.status()], "the throwaway sandbox must be gone"
    summary = _artifact("happy-default-default-mesh-local-summary")
    assert summary is not None and "connectivity-after-permission" in summary.data
    import xml.etree.ElementTree as ET

    cases = ET.parse(next(tmp_path.glob("*.xml"))).getroot().iter("testcase")
    assert [c.get("name") for c in cases] == [s["name"] for s in report["stages"]]
    inputs = _inputs(state.state_details.flow_run_id)  # what Prefect's graph draws: the stages' real inputs
    assert inputs["cluster-start"]["wait_for"] == {"preflight"} and not inputs["cluster-start"].get("cluster")
    assert inputs["install-kong-mesh"]["cluster"] == {"cluster-start"}
    assert inputs["restart-workloads"]["wait_for"] == {"enable-injection", "apply-demo", "apply-mesh-identity"}
    assert inputs["cleanup"]["cluster"] == {"cluster-start"}
    assert inputs["cleanup"]["wait_for"] == {s["name"] for s in report["stages"]} - {"cleanup"}
    run_id = str(state.state_details.flow_run_id)
    [run] = [ledger.run for ledger in map(Ledger.load, load_settings().runs_dir.glob(f"*/{FILE}"))
             if ledger.run and ledger.run.flow_run_id == run_id]
    assert run.root_flow_run_id == run_id  # a run of its own is its process's flow run


def test_guide_passes_with_another_trust_domain_on_an_existing_cluster_and_cleans_up(sandbox_cluster, tmp_path):
    state, report = _run(tmp_path, target=_context_target(sandbox_cluster, "ctx-td"), trust_domain="prod.example.org",
                         charts={"mirror": sandbox_cluster.chart_repo_url}, registration="chart-class")
    assert state.is_completed(), state.message
    assert report["trust_domain"] == "prod.example.org"
    assert "MID031" not in _codes(_stage(report, "register-spiffe-ids"))
    touched = _stage(report, "cleanup")
    assert touched["outcome"] == "passed"
    assert _leftovers(Cluster(sandbox_cluster.kubeconfig)) == []


def test_permission_for_another_namespace_fails_after_permission_with_diagnostics_and_cleanup(sandbox_cluster,
                                                                                             tmp_path):
    state, report = _run(tmp_path, target=_context_target(sandbox_cluster, "ctx-wrongns"),
                         charts={"mirror": sandbox_cluster.chart_repo_url},
                         permission={"type": "Prefix", "value": "spiffe://default.default.mesh.local/ns/other"},
                         timeouts={"connectivity_s": 6})
    assert state.is_failed()
    assert report["failed_stage"] == "connectivity-after-permission"
    after = _stage(report, "connectivity-after-permission")
    assert "MID061" in _codes(after) and after["http"]["status"] == 500
    assert _stage(report, "cleanup")["outcome"] == "passed"
    assert _leftovers(Cluster(sandbox_cluster.kubeconfig)) == []
    diag = _artifact("ctx-wrongns-default-default-mesh-local-diagnostics")
    assert diag is not None and "kong-mesh-demo" in diag.data


def test_mesh_not_exclusive_fails_at_apply_mesh_identity_naming_mesh_services_disabled(sandbox_cluster, tmp_path):
    state, report = _run(tmp_path, target=_context_target(sandbox_cluster, "ctx-excl"),
                         charts={"mirror": sandbox_cluster.chart_repo_url}, mesh_services_mode="Disabled")
    assert state.is_failed()
    assert report["failed_stage"] == "apply-mesh-identity"
    codes = _codes(_stage(report, "apply-mesh-identity"))
    assert {"MID012", "MID041", "MID040"} <= set(codes)
    assert any("MeshServicesDisabled" in c["message"] for c in _stage(report, "apply-mesh-identity")["checks"])
    assert _stage(report, "restart-workloads")["outcome"] == "skipped"
    assert _stage(report, "cleanup")["outcome"] == "passed"


def test_spire_trust_domain_mismatch_is_caught_before_anything_is_applied(sandbox_cluster, tmp_path):
    state, report = _run(tmp_path, target=_context_target(sandbox_cluster, "ctx-mismatch"),
                         charts={"mirror": sandbox_cluster.chart_repo_url}, spire_trust_domain="other.example.org")
    assert state.is_failed() and report["failed_stage"] == "preflight"
    mid003 = next(c for c in _stage(report, "preflight")["checks"] if c["code"] == "MID003")
    assert mid003["outcome"] == "failed" and "other.example.org" in mid003["message"]
    assert _leftovers(Cluster(sandbox_cluster.kubeconfig)) == []


def test_transient_faults_are_retried_and_the_run_passes_marked_flaky(tmp_path):
    info = lifecycle.up(f"flaky-{uuid.uuid4().hex[:4]}", tick_s=0.5)
    try:
        lifecycle.set_faults(info.name, transient_503_share=0.3, drop_port_forward_share=0.2)
        state, report = _run(tmp_path, target=_context_target(info, "ctx-flaky"),
                             charts={"mirror": info.chart_repo_url})
    finally:
        lifecycle.down(info.name)
    assert state.is_completed(), state.message
    flaky = [s["name"] for s in report["stages"] if s["flaky"]]
    assert "connectivity-after-permission" in flaky or "connectivity-before-permission" in flaky
