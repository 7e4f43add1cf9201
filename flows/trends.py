"""The nightly trend: this fleet report against those of the earlier runs of the same deployment.

Each call stores the fleet report as a JSON artifact (key `fleet-report`) of the current flow run, and reads the
earlier ones back through the Prefect API: the `fleet-report` artifacts whose flow run belongs to the same
deployment (flow run results are not persisted, and the markdown summary is not meant to be parsed). Then it
publishes the trend as a markdown artifact `nightly-trend` and a per-stage table `nightly-trend-stages`.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, \
    FlowRunFilterDeploymentId
from prefect.client.schemas.sorting import ArtifactSort
from prefect.runtime import deployment, flow_run

from meshid import trends
from tasks import artifact_sink

REPORT_KEY = "fleet-report"
TREND_KEY = "nightly-trend"
HISTORY = 30  # earlier runs the trend looks back on


def history(deployment_id: str, limit: int = HISTORY) -> list[trends.Night]:
    """The fleet reports of the last `limit` runs of the deployment, oldest first."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[REPORT_KEY])),
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])),
            sort=ArtifactSort.CREATED_DESC, limit=limit)
    nights = [json.loads(a.data) if isinstance(a.data, str) else a.data for a in reversed(found)]
    return [trends.Night(run=n["run"], when=n["when"], report=n["report"]) for n in nights]


def publish_trend(fleet_report: dict[str, Any]) -> None:
    """Store `fleet_report` for later runs and publish the trend over the earlier runs of this deployment and this
    one. Call it from a flow run; outside a deployment the trend covers this run only."""
    deployment_id = deployment.id
    earlier = history(deployment_id) if deployment_id else []
    when = flow_run.scheduled_start_time
    night = trends.Night(run=flow_run.name or "?", when=when.isoformat() if when else "?", report=fleet_report)
    Artifact(type="json", key=REPORT_KEY, data={"run": night.run, "when": night.when, "report": fleet_report},
             description=f"fleet report of {night.run}, read back by the nightly trend").create()
    trend = trends.compute([*earlier, night])
    state = f"failing for {trend.streak} night(s)" if trend.streak else "green"
    artifact_sink.markdown(TREND_KEY, trends.markdown(trend), f"{trend.nights} night(s), {state}")
    artifact_sink.table(f"{TREND_KEY}-stages", trends.rows(trend),
                        f"pass rate and duration per stage over {trend.nights} night(s)")
    get_run_logger().info("nightly trend over %d run(s): %s", trend.nights, state)
