"""meshid/undo.py: a release's uninstall or rollback that failed transiently is made once more, and only that."""

from __future__ import annotations

import pytest

from meshid.errors import ExternalCallError, ExternalTimeout
from meshid.subprocesses import command_failed
from meshid.undo import RELEASE_ATTEMPTS, again_if_transient

# helm 4 when the TTL controller removed the pre-delete hook Job before its watcher saw the Job finish
HOOK_GONE = command_failed("helm uninstall kong-mesh", 1, "Error: resource Job/kong-mesh-system/kong-mesh-delete-webhook"
                           " not ready. status: NotFound, message: Resource not found")


def _call(*failures: ExternalCallError | None):
    """A call that fails with each of `failures` in turn (None: it succeeds), and the list of calls made."""
    made = []

    def call() -> None:
        made.append(len(made))
        if failures[len(made) - 1] is not None:
            raise failures[len(made) - 1]

    return call, made


def test_a_hook_job_gone_before_helm_saw_it_finish_is_uninstalled_again():
    assert HOOK_GONE.transient
    call, made = _call(HOOK_GONE, None)
    again_if_transient(call, RELEASE_ATTEMPTS, 0)
    assert len(made) == 2


def test_the_last_attempts_failure_is_raised():
    call, made = _call(HOOK_GONE, HOOK_GONE, None)
    with pytest.raises(ExternalCallError) as raised:
        again_if_transient(call, 2, 0)
    assert raised.value is HOOK_GONE and len(made) == 2


@pytest.mark.parametrize("failure", [
    command_failed("helm uninstall kong-mesh", 1, "Error: uninstallation completed with 1 error(s): forbidden"),
    ExternalTimeout("helm uninstall kong-mesh", 330),
])
def test_a_lasting_failure_or_a_timeout_is_not_made_again(failure):
    call, made = _call(failure, None)
    with pytest.raises(ExternalCallError):
        again_if_transient(call, RELEASE_ATTEMPTS, 0)
    assert len(made) == 1
