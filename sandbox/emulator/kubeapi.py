"""The few writes the emulator makes, each with a timeout and an explicit patch content type."""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from sandbox.emulator.store import REQUEST_TIMEOUT_S, Kind
from sandbox.rawapi import path, request

TIMEOUT_S = 15
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def timestamp(at: datetime.datetime | None = None) -> str:
    """An API timestamp (RFC 3339, seconds, UTC) of `at` (default now)."""
    return (at or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch of an API timestamp."""
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


class Writer:
    """Creates, patches and deletes objects through one ApiClient."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def create(self, kind: Kind, namespace: str, body: dict) -> None:
        """Create a custom object (namespaced when `namespace`)."""
        request(self.api, "POST", path(kind.group, kind.version, kind.plural, namespace), body=body,
                timeout_s=TIMEOUT_S)

    def merge_patch(self, kind: Kind, namespace: str, name: str, body: dict, status: bool = False) -> None:
        """JSON merge patch of a custom object, or of its status subresource when `status`."""
        request(self.api, "PATCH", path(kind.group, kind.version, kind.plural, namespace, name,
                                        "status" if status else ""), body=body, content_type=MERGE,
                timeout_s=TIMEOUT_S)

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        """Delete a namespaced custom object; already gone is fine."""
        try:
            request(self.api, "DELETE", path(kind.group, kind.version, kind.plural, namespace, name),
                    timeout_s=TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_pod_status(self, namespace: str, name: str, body: dict, content_type: str = STRATEGIC) -> None:
        """Patch of a pod's status: strategic by default (conditions and containerStatuses merge by key), or a JSON
        merge patch (lists replaced whole)."""
        request(self.api, "PATCH", path("", "v1", "pods", namespace, name, "status"), body=body,
                content_type=content_type, timeout_s=TIMEOUT_S)

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge `annotations` into a pod's metadata."""
        request(self.api, "PATCH", path("", "v1", "pods", namespace, name),
                body={"metadata": {"annotations": annotations}}, content_type=MERGE, timeout_s=TIMEOUT_S)

    def record_event(self, obj: Mapping, reason: str, message: str, component: str, event_type: str = "Normal",
                     host: str = "") -> str:
        """Create a core/v1 Event about `obj` (as client-go's event recorder names it: <object>.<nanoseconds hex>)."""
        meta, stamp = obj["metadata"], timestamp()
        name = f"{meta['name']}.{time.time_ns():x}"
        source = {"component": component, **({"host": host} if host else {})}
        body = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": meta["namespace"]},
                "involvedObject": {"kind": obj["kind"], "namespace": meta["namespace"], "name": meta["name"],
                                   "uid": meta["uid"], "apiVersion": obj.get("apiVersion", "v1")},
                "reason": reason, "message": message, "type": event_type, "source": source,
                "reportingComponent": component, "reportingInstance": host, "firstTimestamp": stamp,
                "lastTimestamp": stamp, "count": 1}
        request(self.api, "POST", path("", "v1", "events", meta["namespace"]), body=body, timeout_s=TIMEOUT_S)
        return name

    def repeat_event(self, namespace: str, name: str, count: int) -> None:
        """Count one more occurrence of an event (the recorder's aggregation of identical events)."""
        request(self.api, "PATCH", path("", "v1", "events", namespace, name),
                body={"count": count, "lastTimestamp": timestamp()}, content_type=MERGE, timeout_s=TIMEOUT_S)

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create the ConfigMap, or replace its data."""
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                "data": data}
        try:
            request(self.api, "POST", path("", "v1", "configmaps", namespace), body=body,
                    timeout_s=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 409:
                raise
            request(self.api, "PATCH", path("", "v1", "configmaps", namespace, name), body={"data": data},
                    content_type=MERGE, timeout_s=REQUEST_TIMEOUT_S)
