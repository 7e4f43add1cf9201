"""What fleet tests look at on a sandbox, and the operator who approves a paused rollout."""

from __future__ import annotations

import threading
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                            FlowRunFilterStateType)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from meshid.helm import Helm
from meshid.kube import Cluster
from sandbox import binaries

GUIDE_NAMESPACES = ("kong-mesh-system", "kong-mesh-demo", "spire")


def present(info) -> list[str]:  # noqa: ANN001 - a sandbox.lifecycle.SandboxInfo
    """The guide's namespaces and every helm release on a sandbox."""
    cluster = Cluster(info.kubeconfig)
    namespaces, _ = cluster.list("v1", "Namespace")
    found = sorted(n["metadata"]["name"] for n in namespaces if n["metadata"]["name"] in GUIDE_NAMESPACES
                   and not n["metadata"].get("deletionTimestamp"))
    helm = Helm(info.kubeconfig, binary=str(binaries.bin_dir() / "helm"), home=info.state_dir / "helm-test")
    return found + helm.run(["list", "--all-namespaces", "--short"], "helm list", 30).split()


def approve_when_paused(comment: str, stop: threading.Event) -> None:
    """Approve the first paused fleet run (the operator in the UI)."""
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    with get_client(sync_client=True) as client:
        while not stop.is_set():
            runs = client.read_flow_runs(flow_run_filter=paused,
                                         flow_filter=FlowFilter(name=FlowFilterName(any_=["fleet"])))
            if runs:
                resume_flow_run(runs[0].id, run_input={"approve": True, "comment": comment})
                return
            time.sleep(1)
