"""Queued artifacts: linked to the task run that made them, created in order, complete when the flow ends, and a
refused one is a warning, not a failed run."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from tasks import artifact_sink

pytestmark = pytest.mark.prefect


def _latest(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return found[0] if found else None


@task
def _stage_like(key: str) -> str:
    from prefect.runtime import task_run

    artifact_sink.markdown(key, "# done", "a stage's summary")
    return str(task_run.id)


@flow
def _queued(key: str) -> tuple[str, list[str], int, str]:
    from prefect.runtime import flow_run

    with artifact_sink.publishing() as sink:
        advance = artifact_sink.progress(f"{key}-progress", "steps")
        task_run_id = _stage_like.submit(key).result()
        for percent in (25.0, 50.0, 100.0):
            advance(percent)
        artifact_sink.table(f"{key}-bad", [{"not json": object()}], "a table that cannot be serialized")
        waiting = artifact_sink.progress(f"{key}-waiting", "steps of a run that ends early")
        for percent in (10.0, 20.0, 30.0):
            waiting(percent)
        queued = len(sink._queued)
    return task_run_id, sink.failures, queued, str(flow_run.id)


def test_queued_artifacts_are_linked_ordered_and_complete_when_the_block_ends():
    key = f"sink-{uuid.uuid4().hex[:8]}"
    task_run_id, failures, queued, flow_run_id = _queued(key)
    # progress, markdown, 25 % (the first move goes at once), 100 % (at once; 50 % coalesced into it), the bad table,
    # the second progress and its 10 %; its 20 and 30 % wait for the interval
    assert queued == 7
    stage = _latest(key)
    assert stage is not None and stage.data == "# done"
    assert str(stage.task_run_id) == task_run_id and str(stage.flow_run_id) == flow_run_id
    progress = _latest(f"{key}-progress")
    assert progress is not None and progress.data == 100.0, "updates applied in the order they were queued"
    assert _latest(f"{key}-waiting").data == 30.0, "the latest coalesced move is sent when the block ends"
    assert _latest(f"{key}-bad") is None
    assert len(failures) == 1 and failures[0].startswith(f"table {key}-bad: TypeError")


@flow
def _inline(key: str) -> None:
    artifact_sink.markdown(key, "inline", "outside publishing()")


def test_outside_publishing_an_artifact_is_created_at_once():
    key = f"inline-{uuid.uuid4().hex[:8]}"
    _inline(key)
    assert _latest(key).data == "inline"
