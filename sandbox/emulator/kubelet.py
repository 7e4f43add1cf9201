"""The world's kubelet: what a kubelet does before a container starts, which kwok does not model.

kwok's pod-ready stage leaves a pod Pending while it needs this kubelet (`sandbox/kwokstages.py`), and this module
marks it started when a real kubelet would start its containers:
- Inline CSI volumes. A real kubelet mounts one only through a CSI driver registered on the node; until then
  (kubernetes v1.36 pkg/volume/csi/csi_mounter.go SetUpAt, csi_client.go) every mount attempt fails with
  `MountVolume.SetUp failed for volume "<v>" : kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver
  name <d> not found in the list of registered CSI drivers` (operationexecutor GenerateError), recorded as a Warning
  event FailedMount from component kubelet, retried with exponential backoff from 0.5 s to 2 min 2 s
  (pkg/util/goroutinemap/exponentialbackoff). The pod stays Pending with the status kubelet_pods.go
  convertToAPIContainerStatuses writes before any container runs: every container (init containers too) waiting with
  reason PodInitializing when the pod has init containers, else ContainerCreating; conditions from
  pkg/kubelet/status/generate.go. The SPIFFE CSI driver's node plugin registers its `-plugin-name` once its
  DaemonSet pod on that node is ready, plus `csi_driver_delay_s`; with `csi_driver_absent` its pods never turn ready.
- kubectl containers (the charts' hook Jobs): their command is performed (`hooks.run`) before the pod starts, so a
  Job completes only after its effect. A failing command fails the pod (restartPolicy Never: phase Failed, and the
  Job controller makes a new pod) or is retried in place after a crash-loop backoff (10 s doubling to 5 min).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes.client import ApiClient

from sandbox import kwokstages
from sandbox.emulator import faults, hooks
from sandbox.emulator import store as st
from sandbox.emulator.config import ConfigSource
from sandbox.emulator.kubeapi import MERGE, Writer, parse_timestamp, timestamp
from sandbox.emulator.kuma import pod_ready

log = logging.getLogger("emulator.kubelet")
CSI_DRIVER_APP = "spiffe-csi-driver"  # app.kubernetes.io/name of the driver's pods (spiffe-csi-driver chart)
DEFAULT_PLUGIN = "csi.spiffe.io"  # the driver's -plugin-name default (spiffe-csi-driver values.yaml pluginName)
MOUNT_RETRY_S, MOUNT_RETRY_MAX_S = 0.5, 122.0
CRASH_BACKOFF_S, CRASH_BACKOFF_MAX_S = 10.0, 300.0


def _go_list(names: list[str]) -> str:
    return "[" + " ".join(names) + "]"  # Go's %s of a []string


def mount_failure(volume: str, driver: str) -> str:
    """The FailedMount message of a kubelet whose CSI driver `driver` is not registered."""
    return (f'MountVolume.SetUp failed for volume "{volume}" : kubernetes.io/csi: mounter.SetUpAt failed to get CSI '
            f"client: driver name {driver} not found in the list of registered CSI drivers")


def waiting_status(pod: Mapping, now: str, host_ip: str) -> dict:
    """The status a kubelet writes for a pod whose volumes are not mounted yet (a JSON merge patch)."""
    spec = pod["spec"]
    inits = [c["name"] for c in spec.get("initContainers") or []]
    apps = [c["name"] for c in spec.get("containers") or []]
    reason = "PodInitializing" if inits else "ContainerCreating"

    def statuses(containers: list[Mapping]) -> list[dict]:
        return [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "restartCount": 0,
                 "started": False, "state": {"waiting": {"reason": reason}}, "lastState": {}} for c in containers]

    scheduled = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
    unready = {"status": "False", "reason": "ContainersNotReady",
               "message": f"containers with unready status: {_go_list(apps)}", "lastTransitionTime": now}
    initialized = {"type": "Initialized", "status": "True", "lastTransitionTime": now} if not inits else \
        {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
         "message": f"containers with incomplete status: {_go_list(inits)}", "lastTransitionTime": now}
    conditions = [{"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": now}, initialized,
                  {"type": "Ready", **unready}, {"type": "ContainersReady", **unready}, *scheduled]
    status = {"phase": "Pending", "conditions": conditions, "startTime": now,
              "containerStatuses": statuses(spec.get("containers") or [])}
    if inits:
        status["initContainerStatuses"] = statuses(spec.get("initContainers") or [])
    if host_ip:
        status["hostIP"], status["hostIPs"] = host_ip, [{"ip": host_ip}]
    return {"status": status}


def started_status(pod: Mapping) -> dict:
    """JSON merge patch that removes what `waiting_status` wrote, leaving kwok's pod-ready a pod as it was scheduled."""
    scheduled = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"]
    return {"status": {"conditions": scheduled, "containerStatuses": None, "initContainerStatuses": None}}


def failed_status(pod: Mapping, message: str) -> dict:
    """The status of a pod whose only container exited 1 (restartPolicy Never): phase Failed."""
    now = timestamp()
    statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "restartCount": 0,
                 "started": False, "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": message,
                                                            "startedAt": now, "finishedAt": now}}}
                for c in pod["spec"].get("containers") or []]
    return {"status": {"phase": "Failed", "containerStatuses": statuses, "startTime": now}}


@dataclass
class _Mount:
    """A pod waiting for CSI drivers, and when its next FailedMount event is due."""

    pod: dict
    retry_s: float = MOUNT_RETRY_S
    next_event: float = 0.0
    event_name: str = ""
    count: int = 0


def plugin_name(driver_pod: Mapping) -> str:
    """The CSI driver name a SPIFFE CSI driver pod registers (its `-plugin-name` argument)."""
    for container in driver_pod["spec"].get("containers") or []:
        args = [*(container.get("command") or []), *(container.get("args") or [])]
        for flag in ("-plugin-name", "--plugin-name"):
            if flag in args[:-1]:
                return args[args.index(flag) + 1]
    return DEFAULT_PLUGIN


def ready_since(pod: Mapping) -> float | None:
    """When the pod's Ready condition turned True (seconds since the epoch), or None when it is not ready."""
    if not pod_ready(pod):
        return None
    ready = next(c for c in pod["status"]["conditions"] if c.get("type") == "Ready")
    return parse_timestamp(ready["lastTransitionTime"]) if ready.get("lastTransitionTime") else 0.0


class Kubelet:
    """Holds pods until their CSI drivers are registered or their kubectl command ran, then starts them."""

    def __init__(self, store: st.Store, writer: Writer, config: ConfigSource, api: ApiClient) -> None:
        self._store, self._writer, self._config, self._api = store, writer, config, api
        self._lock = threading.Lock()
        self._mounts: dict[str, _Mount] = {}
        self._commands: set[str] = set()  # pods whose kubectl command runs now
        self._started: set[str] = set()  # pods this kubelet started (their annotation may not be seen yet)
        self._timers: set[float] = set()  # registration times a re-check is scheduled for
        self._absent = faults.PodFaults(writer, faults.not_ready_status, every_tick=False)

    # events
    def on_pod(self, event: str, pod: dict) -> None:
        """Store listener: a pod to hold or start, or a CSI driver pod whose readiness changes registrations."""
        meta = pod["metadata"]
        if meta.get("labels", {}).get("app.kubernetes.io/name") == CSI_DRIVER_APP:
            self._check_mounts()
            return
        uid = meta.get("uid", "")
        if event == "DELETED" or meta.get("deletionTimestamp"):
            with self._lock:
                self._mounts.pop(uid, None)
                self._started.discard(uid)
            return
        if kwokstages.started(pod):
            with self._lock:
                self._started.discard(uid)  # from now on the annotation says it
            return
        if not kwokstages.needs_kubelet(pod) or uid in self._started or \
                not pod["spec"].get("nodeName") or (pod.get("status") or {}).get("phase", "Pending") != "Pending":
            return
        if hooks.command_of(pod) is not None:
            self._run_command(pod)
        else:
            with self._lock:
                held = self._mounts.setdefault(uid, _Mount(pod))
                held.pod = pod
            self._check_mounts()

    def tick(self, now: float) -> None:
        """Apply `csi_driver_absent` to the driver's pods, re-check waiting mounts, repeat due FailedMount events."""
        absent = self._config.current.csi_driver_absent
        if absent or self._absent.active:
            self._absent.tick(self._driver_pods(), absent)
        self._check_mounts()

    # CSI mounts
    def _driver_pods(self) -> list[dict]:
        return [p for p in self._store.list(st.PODS)
                if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == CSI_DRIVER_APP]

    def _registered(self, node: str, now: float, drivers: list[dict]) -> tuple[set[str], float | None]:
        """CSI drivers registered on `node` now (of the driver pods `drivers`), and the next time another one
        registers (None: no pending one)."""
        conf = self._config.current
        registered, upcoming = set(), None
        if conf.csi_driver_absent:
            return registered, None
        for driver in drivers:
            since = ready_since(driver)
            if driver["spec"].get("nodeName") != node or since is None:
                continue
            at = since + conf.csi_driver_delay_s
            if at <= now:
                registered.add(plugin_name(driver))
            else:
                upcoming = at if upcoming is None else min(upcoming, at)
        return registered, upcoming

    def _check_mounts(self) -> None:
        now = time.time()
        with self._lock:
            waiting = list(self._mounts.values())
        drivers = self._driver_pods() if waiting else []
        for held in waiting:
            pod = held.pod
            registered, upcoming = self._registered(pod["spec"]["nodeName"], now, drivers)
            missing = [(v["name"], v["csi"].get("driver", "")) for v in pod["spec"].get("volumes") or []
                       if v.get("csi") is not None and v["csi"].get("driver", "") not in registered]
            try:
                if not missing:
                    with self._lock:
                        if self._mounts.pop(pod["metadata"]["uid"], None) is None:
                            continue  # started by a concurrent check
                    self._start(pod, wrote_status=held.count > 0)
                    continue
                if now >= held.next_event:
                    self._fail_mount(held, *missing[0], now)
            except Exception:  # noqa: BLE001 - a failed write is retried on the next check
                log.exception("kubelet: pod %s/%s", pod["metadata"]["namespace"], pod["metadata"]["name"])
            if upcoming is not None:
                self._recheck_at(upcoming)

    def _recheck_at(self, at: float) -> None:
        with self._lock:
            if at in self._timers:
                return
            self._timers.add(at)
        timer = threading.Timer(max(0.0, at - time.time()) + 0.05, self._recheck_fired, args=(at,))
        timer.daemon = True
        timer.start()

    def _recheck_fired(self, at: float) -> None:
        with self._lock:
            self._timers.discard(at)
        self._check_mounts()

    def _fail_mount(self, held: _Mount, volume: str, driver: str, now: float) -> None:
        pod, meta = held.pod, held.pod["metadata"]
        stamp = timestamp()
        if held.count == 0:
            node = self._store.get(st.NODES, "", pod["spec"]["nodeName"]) or {}
            host_ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                            if a.get("type") == "InternalIP"), "")
            self._writer.patch_pod_status(meta["namespace"], meta["name"], waiting_status(pod, stamp, host_ip),
                                          content_type=MERGE)
            held.event_name = self._writer.record_event(
                {"kind": "Pod", **pod}, "FailedMount", mount_failure(volume, driver), "kubelet", "Warning",
                host=pod["spec"]["nodeName"])
            log.info("%s/%s waits for CSI driver %s on %s", meta["namespace"], meta["name"], driver,
                     pod["spec"]["nodeName"])
        else:
            self._writer.repeat_event(meta["namespace"], held.event_name, held.count + 1)
        held.count += 1
        held.next_event = now + held.retry_s
        held.retry_s = min(held.retry_s * 2, MOUNT_RETRY_MAX_S)

    def _start(self, pod: Mapping, wrote_status: bool) -> None:
        meta = pod["metadata"]
        with self._lock:
            self._started.add(meta["uid"])
        if wrote_status:
            self._writer.patch_pod_status(meta["namespace"], meta["name"], started_status(pod), content_type=MERGE)
        self._writer.annotate_pod(meta["namespace"], meta["name"], {kwokstages.STARTED: "true"})
        log.info("started %s/%s", meta["namespace"], meta["name"])

    # kubectl containers
    def _run_command(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self._commands:
                return
            self._commands.add(uid)
        threading.Thread(target=self._command, args=(pod,), name=f"kubectl-{pod['metadata']['name']}",
                         daemon=True).start()

    def _command(self, pod: dict) -> None:
        meta = pod["metadata"]
        backoff = CRASH_BACKOFF_S
        try:
            while True:
                try:
                    log.info("%s/%s: %s", meta["namespace"], meta["name"], hooks.run(self._api, pod))
                    self._start(pod, wrote_status=False)
                    return
                except hooks.CommandFailed as exc:
                    log.warning("%s/%s: kubectl failed: %s", meta["namespace"], meta["name"], exc)
                    if pod["spec"].get("restartPolicy", "Always") == "Never":
                        self._writer.patch_pod_status(meta["namespace"], meta["name"], failed_status(pod, str(exc)))
                        return
                if self._store.get(st.PODS, meta["namespace"], meta["name"]) is None:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, CRASH_BACKOFF_MAX_S)
        except Exception:  # noqa: BLE001 - the API failed: the next event of the pod tries again
            log.exception("kubectl container of %s/%s", meta["namespace"], meta["name"])
        finally:
            with self._lock:
                self._commands.discard(meta["uid"])
