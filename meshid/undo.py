"""Undo what a run applied (its ledger), newest first: delete created objects, uninstall or roll back releases, and
remove what an uninstalled release leaves behind that the run created (kept CRDs, StatefulSet claims).

Used by cleanup on existing clusters and by fleet rollouts to roll a cluster back. Objects that existed before the
run are left as they are. An uninstall also deletes the release's hook objects still there (an interrupted install
leaves them: helm deletes hooks only when they finish, per their `helm.sh/hook-delete-policy`). Every deletion is
then waited for, so what is still there when undo returns is named.

A deleted CRD goes once kube-apiserver's CRD finalizer has removed its instances (apiextensions-apiserver 0.36,
pkg/controller/finalizer/crd_finalizer.go). Its first try fails when nobody has listed the instances yet (their
storage is still initializing: `InstanceDeletionFailed`); when its retry then meets a conflict it returns without
error, and it ignores changes to the Terminating condition alone, so it waits for the informer's resync, 5 minutes
(operator-framework/operator-controller#1437 saw the same). Any other change to the CRD requeues it, so undo stamps
an annotation on a CRD whose finalizer last failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from meshid.conditions import condition
from meshid.errors import ExternalCallError, ExternalTimeout, WaitTimeout
from meshid.helm import Helm
from meshid.kube import ApiError, Cluster
from meshid.ledger import AppliedObject, AppliedRelease, Entry, Ledger
from meshid.stages.output import StageOutput

CRD_API = "apiextensions.k8s.io/v1"
FINALIZER_FAILED = ("InstanceDeletionFailed", "InstanceDeletionCheck")  # the Terminating reasons of a failed try
REQUEUE_ANNOTATION = "meshid.io/requeue-crd-finalizer"
REQUEUE_AFTER_S = 3.0  # how long a CRD may stay with a failed finalizer try before undo requeues the finalizer
# A release's uninstall or rollback that failed transiently is made once more: an API blip, or a hook Job whose TTL
# removed it before helm 4's watcher saw it finish (Kong Mesh's hook Jobs set ttlSecondsAfterFinished: 0;
# helm/helm#32586). Both are idempotent: a failed pre-delete hook leaves the release as it was, and one already gone
# is "not found". Not after helm ran past its own timeout: a second one would double a cleanup that long.
RELEASE_ATTEMPTS = 2
RELEASE_RETRY_S = 2.0


def undo(cluster: Cluster, helm: Helm, ledger: Ledger, timeout_s: float, out: StageOutput) -> list[str]:
    """Undo every ledger entry in reverse order and verify; return the problems (empty when all is undone)."""
    problems: list[str] = []
    deleting: list[tuple[Entry, list[AppliedObject]]] = []  # a ledger entry and the objects its undo deleted
    for entry in reversed(list(ledger.entries)):
        try:
            if isinstance(entry, AppliedRelease):
                _undo_release(cluster, helm, entry, timeout_s, out)
                deleting.append((entry, [_delete(cluster, obj, out) for obj in _left_behind(cluster, entry)]))
            elif entry.created:
                deleting.append((entry, [_delete(cluster, entry, out)]))
            else:
                ledger.forget(entry)
        except ExternalCallError as exc:
            problems.append(str(exc))
    for entry, objects in deleting:
        try:
            for obj in objects:
                _wait_gone(cluster, obj, timeout_s)
            ledger.forget(entry)
        except (WaitTimeout, ExternalCallError) as exc:
            problems.append(str(exc))
    return problems


def _undo_release(cluster: Cluster, helm: Helm, entry: AppliedRelease, timeout_s: float, out: StageOutput) -> None:
    again_if_transient(lambda: _undo_release_once(cluster, helm, entry, timeout_s, out), RELEASE_ATTEMPTS,
                       RELEASE_RETRY_S)


def again_if_transient(call: Callable[[], None], attempts: int, pause_s: float) -> None:
    """`call()`, made again after `pause_s` while it fails with a transient ExternalCallError other than a timeout,
    `attempts` times at most; the last failure is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ExternalCallError as exc:
            if not exc.transient or isinstance(exc, ExternalTimeout) or attempt == attempts:
                raise
            time.sleep(pause_s)


def _undo_release_once(cluster: Cluster, helm: Helm, entry: AppliedRelease, timeout_s: float,
                       out: StageOutput) -> None:
    if entry.previous_revision is None:
        hooks = helm.hooks(entry.name, entry.namespace)
        helm.uninstall(entry.name, entry.namespace, timeout_s)
        out.touch("HelmRelease", entry.namespace, entry.name, "uninstalled")
        for hook in hooks:
            _delete_left_hook(cluster, hook, entry.namespace, out)
    else:
        current = helm.status(entry.name, entry.namespace)
        helm.rollback(entry.name, entry.namespace, entry.previous_revision, timeout_s,
                      client_side=current is not None and current.client_side)
        out.touch("HelmRelease", entry.namespace, entry.name, "rolled back", f"to revision {entry.previous_revision}")


def _left_behind(cluster: Cluster, entry: AppliedRelease) -> list[AppliedObject]:
    """What the uninstalled release left that the run created: CRDs of its group that were not there before it, and
    its StatefulSets' claims."""
    if entry.previous_revision is not None:
        return []
    left = []
    if entry.crd_group:
        crds, _ = cluster.list(CRD_API, "CustomResourceDefinition")
        left += [AppliedObject(CRD_API, "CustomResourceDefinition", c["metadata"]["name"], None, True) for c in crds
                 if c.get("spec", {}).get("group") == entry.crd_group and c["metadata"]["name"] not in entry.crds_before]
    for claim in entry.claims:
        if cluster.get("v1", "PersistentVolumeClaim", claim, entry.namespace) is not None:
            left.append(AppliedObject("v1", "PersistentVolumeClaim", claim, entry.namespace, True))
    return left


def _delete(cluster: Cluster, entry: AppliedObject, out: StageOutput) -> AppliedObject:
    if cluster.delete(entry.api_version, entry.kind, entry.name, entry.namespace):
        out.touch(entry.kind, entry.namespace, entry.name, "deleted")
    return entry


def _delete_left_hook(cluster: Cluster, hook: dict, release_namespace: str, out: StageOutput) -> None:
    meta = hook.get("metadata") or {}
    try:
        resource = cluster.resource(hook["apiVersion"], hook["kind"])
    except ApiError as exc:
        if exc.status == 404:
            return  # its kind is gone, and the object with it
        raise
    namespace = (meta.get("namespace") or release_namespace) if resource.namespaced else None
    found = cluster.get(hook["apiVersion"], hook["kind"], meta["name"], namespace)
    if found is not None and "helm.sh/hook" in (found["metadata"].get("annotations") or {}):
        cluster.delete(hook["apiVersion"], hook["kind"], meta["name"], namespace)
        out.touch(hook["kind"], namespace, meta["name"], "deleted", "hook object its release left")


def _wait_gone(cluster: Cluster, entry: AppliedObject, timeout_s: float) -> None:
    if entry.api_version == CRD_API and entry.kind == "CustomResourceDefinition":
        _wait_crd_gone(cluster, entry.name, timeout_s)
    else:
        wait_gone(cluster, entry.api_version, entry.kind, entry.name, entry.namespace, timeout_s)


def _wait_crd_gone(cluster: Cluster, name: str, timeout_s: float) -> None:
    """wait_gone for a CRD, requeuing the API server's CRD finalizer whenever its last try failed."""
    deadline, seen = time.monotonic() + timeout_s, {}

    def gone(objs: list[dict]) -> tuple[bool, str]:
        seen["crd"] = objs[0] if objs else None
        return not objs, terminating(objs[0]) if objs else "gone"

    while True:
        remaining = deadline - time.monotonic()
        try:
            cluster.wait(f"CustomResourceDefinition {name} to be deleted", CRD_API, "CustomResourceDefinition", gone,
                         min(remaining, REQUEUE_AFTER_S), field_selector=f"metadata.name={name}")
            return
        except WaitTimeout as exc:
            if remaining <= REQUEUE_AFTER_S:
                raise WaitTimeout(exc.waited_for, exc.last_seen, timeout_s) from None
        if finalizer_failed(seen.get("crd")):
            try:
                cluster.patch(CRD_API, "CustomResourceDefinition", name,
                              {"metadata": {"annotations": {REQUEUE_ANNOTATION: f"{time.time():.0f}"}}})
            except ApiError as exc:
                if exc.status != 404:
                    raise


def terminating(crd: dict) -> str:
    """A CRD's Terminating condition in one line, e.g. `Terminating=True: InstanceDeletionFailed (could not ...)`."""
    cond = condition(crd, "Terminating")
    if cond is None:
        return "1 left, not terminating yet"
    return f"Terminating={cond.get('status')}: {cond.get('reason')} ({cond.get('message', '')})"


def finalizer_failed(crd: dict | None) -> bool:
    """Whether a deleted CRD's last finalizer try failed (and the finalizer may not try again by itself)."""
    if not crd or not crd["metadata"].get("deletionTimestamp"):
        return False
    cond = condition(crd, "Terminating")
    return cond is not None and cond.get("reason") in FINALIZER_FAILED


def wait_gone(cluster: Cluster, api_version: str, kind: str, name: str, namespace: str | None,
              timeout_s: float) -> None:
    """Wait until an object is deleted (WaitTimeout naming it otherwise)."""
    where = f"{namespace}/{name}" if namespace else name
    try:
        cluster.wait(f"{kind} {where} to be deleted", api_version, kind,
                     lambda objs: (not objs, f"{len(objs)} left" if objs else "gone"), timeout_s,
                     namespace=namespace, field_selector=f"metadata.name={name}")
    except ApiError as exc:
        if exc.status != 404:
            raise  # 404: the kind itself is gone (its CRD was uninstalled), and with it the object
