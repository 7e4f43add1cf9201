"""Which crashed worker children the fleet may create again: only those whose flow never began."""

from datetime import datetime, timezone
from uuid import uuid4

from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Crashed

from flows.dispatch import never_started


def _run(state, started: bool) -> FlowRun:
    return FlowRun(flow_id=uuid4(), state=state, start_time=datetime.now(timezone.utc) if started else None)


def test_a_run_that_crashed_before_it_began_never_started():
    assert never_started(_run(Crashed(message="Flow run infrastructure exited with non-zero status code 1."), False))


def test_a_run_that_crashed_after_it_began_may_have_touched_its_cluster():
    assert not never_started(_run(Crashed(message="worker killed"), True))


def test_a_run_that_ended_otherwise_is_not_created_again():
    assert not never_started(_run(Completed(), True))
    assert not never_started(_run(None, False))
