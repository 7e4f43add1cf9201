"""When undo requeues kube-apiserver's CRD finalizer: only for a deleted CRD whose finalizer's last try failed."""

from __future__ import annotations

from meshid.undo import finalizer_failed, terminating


def _crd(deleted: bool, reason: str | None) -> dict:
    conditions = [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]
    if reason:
        conditions.append({"type": "Terminating", "status": "True", "reason": reason,
                           "message": "could not list instances: storage is (re)initializing"})
    meta = {"name": "clusterstaticentries.spire.spiffe.io"}
    if deleted:
        meta["deletionTimestamp"] = "2026-12-04T06:41:57Z"
    return {"metadata": meta, "status": {"conditions": conditions}}


def test_a_failed_try_on_a_deleted_crd_is_requeued():
    assert finalizer_failed(_crd(True, "InstanceDeletionFailed"))
    assert finalizer_failed(_crd(True, "InstanceDeletionCheck"))


def test_a_finalizer_at_work_or_a_crd_not_deleted_is_left_alone():
    assert not finalizer_failed(_crd(True, "InstanceDeletionInProgress"))
    assert not finalizer_failed(_crd(True, None))
    assert not finalizer_failed(_crd(False, "InstanceDeletionFailed"))
    assert not finalizer_failed(None)
    assert not finalizer_failed({"metadata": {"name": "x", "deletionTimestamp": "t"}, "status": None})


def test_the_last_observation_names_the_finalizers_reason_and_message():
    assert terminating(_crd(True, "InstanceDeletionFailed")) == (
        "Terminating=True: InstanceDeletionFailed (could not list instances: storage is (re)initializing)")
    assert terminating(_crd(True, None)) == "1 left, not terminating yet"
