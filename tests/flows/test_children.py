"""A fleet's jobs read their children's states together: one API read for all of them, paced, errors to every job."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client

from flows.children import ChildReader


@flow
def child() -> None:
    """Stands for a fleet-target run (never run here: only its flow runs are created)."""


@pytest.fixture
def runs():
    with get_client(sync_client=True) as client:
        yield client, [client.create_flow_run(child, name=f"child-{i}").id for i in range(4)]


def _counting(client):
    calls = []
    reading = client.read_flow_runs

    def read_flow_runs(**kwargs):
        calls.append(kwargs)
        time.sleep(0.2)  # long enough that every job is waiting for this read
        return reading(**kwargs)

    client.read_flow_runs = read_flow_runs
    return calls


def test_jobs_waiting_together_get_their_own_child_from_one_read(runs):
    client, ids = runs
    calls = _counting(client)
    reader = ChildReader(interval_s=0.5)
    found: dict = {}
    start = threading.Barrier(len(ids))

    def job(run_id):
        start.wait()
        found[run_id] = reader.read(client, run_id).id

    threads = [threading.Thread(target=job, args=(run_id,)) for run_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert found == {run_id: run_id for run_id in ids}
    assert len(calls) <= 2, "the jobs that came while a read was under way share the next one"


def test_reads_are_paced_by_the_interval(runs):
    client, ids = runs
    reader = ChildReader(interval_s=0.5)
    reader.read(client, ids[0])
    began = time.monotonic()
    reader.read(client, ids[0])
    assert time.monotonic() - began >= 0.45


def test_a_read_that_fails_fails_every_job_that_waited_for_it(runs):
    client, ids = runs
    reader = ChildReader(interval_s=0.1)

    def failing(**kwargs):
        time.sleep(0.2)
        raise httpx.ConnectError("the API is away")

    client.read_flow_runs = failing
    errors = []

    def job(run_id):
        try:
            reader.read(client, run_id)
        except httpx.ConnectError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(run_id,)) for run_id in ids[:3]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 3
