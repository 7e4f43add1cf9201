"""An in-memory copy of the cluster objects the emulator reads, kept current by list+watch streams.

One thread per kind lists the objects, then watches from that resourceVersion (re-listing after a 410 or an error).
Kinds backed by a CRD wait until the CRD is established, so the emulator can start before the charts are installed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from sandbox.rawapi import path, request, watch

WATCH_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = WATCH_TIMEOUT_S + 30
RETRY_S = 1.0

Obj = dict
Listener = Callable[[str, Obj], None]


@dataclass(frozen=True)
class Kind:
    """A resource type the store mirrors; `crd` names the CRD it waits for (empty for built-in kinds)."""

    plural: str
    group: str = ""
    version: str = "v1"
    crd: str = ""


PODS = Kind("pods")
SERVICES = Kind("services")
NAMESPACES = Kind("namespaces")
CONFIGMAPS = Kind("configmaps")
NODES = Kind("nodes")
CLAIMS = Kind("persistentvolumeclaims")
VOLUMES = Kind("persistentvolumes")
CRDS = Kind("customresourcedefinitions", "apiextensions.k8s.io")
MESHES = Kind("meshes", "kuma.io", "v1alpha1", crd="meshes.kuma.io")
MESH_IDENTITIES = Kind("meshidentities", "kuma.io", "v1alpha1", crd="meshidentities.kuma.io")
MESH_TRAFFIC_PERMISSIONS = Kind("meshtrafficpermissions", "kuma.io", "v1alpha1", crd="meshtrafficpermissions.kuma.io")
MESH_SERVICES = Kind("meshservices", "kuma.io", "v1alpha1", crd="meshservices.kuma.io")
CLUSTER_SPIFFE_IDS = Kind("clusterspiffeids", "spire.spiffe.io", "v1alpha1", crd="clusterspiffeids.spire.spiffe.io")

ALL_KINDS = (PODS, SERVICES, NAMESPACES, CONFIGMAPS, NODES, CLAIMS, VOLUMES, CRDS, MESHES, MESH_IDENTITIES, MESH_TRAFFIC_PERMISSIONS,
             MESH_SERVICES, CLUSTER_SPIFFE_IDS)


def key_of(obj: Obj) -> tuple[str, str]:
    """(namespace, name) of an object ('' namespace for cluster-scoped ones)."""
    meta = obj.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


def _established(crd: Obj) -> bool:
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


class Store:
    """Thread-safe mirror of every kind in ALL_KINDS."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._objects: dict[Kind, dict[tuple[str, str], Obj]] = {k: {} for k in ALL_KINDS}
        self._listeners: dict[Kind, list[Listener]] = {k: [] for k in ALL_KINDS}
        self._synced = {k: threading.Event() for k in ALL_KINDS}
        self._crd_ready: dict[str, threading.Event] = {k.crd: threading.Event() for k in ALL_KINDS if k.crd}
        self._stop = threading.Event()

    # reading
    def get(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """The object, or None."""
        with self._lock:
            return self._objects[kind].get((namespace, name))

    def list(self, kind: Kind, namespace: str | None = None) -> list[Obj]:
        """Objects of `kind` (in `namespace` when given), sorted by namespace and name."""
        with self._lock:
            items = sorted(self._objects[kind].items())
        return [obj for (ns, _), obj in items if namespace is None or ns == namespace]

    def subscribe(self, kind: Kind, listener: Listener) -> None:
        """Call `listener(event_type, obj)` from the watch thread after each change of `kind`."""
        self._listeners[kind].append(listener)

    def wait_synced(self, timeout_s: float) -> bool:
        """Wait until every built-in kind has completed its first list."""
        deadline = time.monotonic() + timeout_s
        return all(self._synced[k].wait(max(0.0, deadline - time.monotonic())) for k in ALL_KINDS if not k.crd)

    # running
    def start(self) -> None:
        """Start one daemon watch thread per kind."""
        for kind in ALL_KINDS:
            threading.Thread(target=self._run, args=(kind,), name=f"watch-{kind.plural}", daemon=True).start()

    def stop(self) -> None:
        """Ask the watch threads to end after their current watch call."""
        self._stop.set()

    def _run(self, kind: Kind) -> None:
        collection = path(kind.group, kind.version, kind.plural)
        while not self._stop.is_set():
            if kind.crd and not self._crd_ready[kind.crd].wait(timeout=WATCH_TIMEOUT_S):
                continue
            try:
                version = self._relist(kind, collection)
                self._synced[kind].set()
                while not self._stop.is_set():
                    version = self._watch(kind, collection, version)
            except ApiException as exc:
                if exc.status == 410:
                    continue  # too old a resourceVersion: list again
                if not (kind.crd and exc.status == 404):
                    print(f"emulator: watch {kind.plural}: {exc.status} {exc.reason}", flush=True)
                self._stop.wait(RETRY_S)
            except Exception as exc:  # noqa: BLE001 - any failure of the API means: wait, then list again
                print(f"emulator: watch {kind.plural}: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                self._stop.wait(RETRY_S)

    def _relist(self, kind: Kind, collection: str) -> str:
        body = request(self._api, "GET", collection, timeout_s=REQUEST_TIMEOUT_S)
        fresh = {key_of(obj): obj for obj in body.get("items", [])}
        with self._lock:
            old, self._objects[kind] = self._objects[kind], fresh
        for k, obj in old.items():
            if k not in fresh:
                self._apply(kind, "DELETED", obj, store=False)
        for obj in fresh.values():
            self._apply(kind, "ADDED", obj, store=False)
        return body.get("metadata", {}).get("resourceVersion", "")

    def _watch(self, kind: Kind, collection: str, version: str) -> str:
        for event in watch(self._api, collection, WATCH_TIMEOUT_S, version):
            raw = event["object"]
            version = raw.get("metadata", {}).get("resourceVersion", version)
            if event["type"] != "BOOKMARK":
                self._apply(kind, event["type"], raw)
            if self._stop.is_set():
                break
        return version

    def _apply(self, kind: Kind, event_type: str, obj: Obj, store: bool = True) -> None:
        if store:
            with self._lock:
                if event_type == "DELETED":
                    self._objects[kind].pop(key_of(obj), None)
                else:
                    self._objects[kind][key_of(obj)] = obj
        if kind is CRDS and obj["metadata"]["name"] in self._crd_ready:
            ready = self._crd_ready[obj["metadata"]["name"]]
            ready.set() if event_type != "DELETED" and _established(obj) else ready.clear()
        for listener in self._listeners[kind]:
            try:
                listener(event_type, obj)
            except Exception as exc:  # noqa: BLE001 - a broken listener must not stop the watch
                print(f"emulator: listener for {kind.plural} failed: {type(exc).__name__}: {exc}", flush=True)
