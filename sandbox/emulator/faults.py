"""Fault knobs that show on pods: a crash-looping control plane, a not-ready spire-server, absent CSI drivers.

kwok makes pods Ready once and then leaves their status alone, so the emulator owns these flips: while a fault is on,
the affected pods are not ready (the control plane's restart counts rise each tick, in CrashLoopBackOff); when it is
cleared they are ready again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sandbox.emulator.kubeapi import Writer
from sandbox.emulator.kubeapi import timestamp as _now
from sandbox.emulator.kuma import pod_ready


def _conditions(ready: bool, now: str) -> list[dict]:
    status = "True" if ready else "False"
    extra = {} if ready else {"reason": "ContainersNotReady"}
    return [{"type": t, "status": status, "lastTransitionTime": now, **extra} for t in ("Ready", "ContainersReady")]


def crash_status(pod: Mapping) -> dict:
    """Status patch of one more crash: not ready, restartCount + 1, waiting in CrashLoopBackOff."""
    now = _now()
    statuses = [{"name": c["name"], "ready": False, "restartCount": c.get("restartCount", 0) + 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff",
                                       "message": f"back-off restarting failed container {c['name']}"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": now}}}
                for c in (pod.get("status") or {}).get("containerStatuses") or []]
    return {"status": {"conditions": _conditions(False, now), "containerStatuses": statuses}}


def not_ready_status(pod: Mapping) -> dict:
    """Status patch of a running pod whose readiness probe fails."""
    statuses = [{"name": c["name"], "ready": False} for c in (pod.get("status") or {}).get("containerStatuses") or []]
    return {"status": {"conditions": _conditions(False, _now()), "containerStatuses": statuses}}


def recovered_status(pod: Mapping) -> dict:
    """Status patch of a pod back to running and ready."""
    now = _now()
    statuses = [{"name": c["name"], "ready": True, "state": {"running": {"startedAt": now}, "waiting": None}}
                for c in (pod.get("status") or {}).get("containerStatuses") or []]
    return {"status": {"conditions": _conditions(True, now), "containerStatuses": statuses}}


class PodFaults:
    """Applies one fault to a set of pods each tick and undoes it when the fault is cleared."""

    def __init__(self, writer: Writer, broken: Callable[[Mapping], dict], every_tick: bool) -> None:
        self._writer = writer
        self._broken = broken  # pod -> status patch while the fault is on
        self._every_tick = every_tick  # patch again each tick (crash loops), or only when the pod looks ready
        self._affected: set[str] = set()

    @property
    def active(self) -> bool:
        """True while some pod this fault broke is not healed yet."""
        return bool(self._affected)

    def tick(self, pods: list[Mapping], on: bool) -> None:
        """Break `pods` (again) while `on`; heal every pod this fault broke once it is off."""
        for pod in pods:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            if on and (self._every_tick or pod_ready(pod)):
                self._writer.patch_pod_status(meta["namespace"], meta["name"], self._broken(pod))
                self._affected.add(meta["uid"])
            elif not on and meta["uid"] in self._affected:
                self._writer.patch_pod_status(meta["namespace"], meta["name"], recovered_status(pod))
                self._affected.discard(meta["uid"])
