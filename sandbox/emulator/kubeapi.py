"""The few writes the emulator makes, each with a timeout and an explicit patch content type."""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sandbox.emulator.store import REQUEST_TIMEOUT_S, Kind

TIMEOUT_S = 15
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class Writer:
    """Creates, patches and deletes objects through one ApiClient."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    def create(self, kind: Kind, namespace: str, body: dict) -> None:
        """Create a custom object (namespaced when `namespace`)."""
        if namespace:
            self._custom.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, body,
                                                         _request_timeout=TIMEOUT_S)
        else:
            self._custom.create_cluster_custom_object(kind.group, kind.version, kind.plural, body,
                                                      _request_timeout=TIMEOUT_S)

    def merge_patch(self, kind: Kind, namespace: str, name: str, body: dict, status: bool = False) -> None:
        """JSON merge patch of a custom object, or of its status subresource when `status`."""
        args = (kind.group, kind.version, namespace, kind.plural, name, body) if namespace else \
            (kind.group, kind.version, kind.plural, name, body)
        method = {(True, False): self._custom.patch_namespaced_custom_object,
                  (True, True): self._custom.patch_namespaced_custom_object_status,
                  (False, False): self._custom.patch_cluster_custom_object,
                  (False, True): self._custom.patch_cluster_custom_object_status}[(bool(namespace), status)]
        method(*args, _content_type=MERGE, _request_timeout=TIMEOUT_S)

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        """Delete a namespaced custom object; already gone is fine."""
        try:
            self._custom.delete_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name,
                                                         _request_timeout=TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_pod_status(self, namespace: str, name: str, body: dict) -> None:
        """Strategic merge patch of a pod's status (conditions and containerStatuses merge by key)."""
        self._core.patch_namespaced_pod_status(name, namespace, body, _content_type=STRATEGIC,
                                               _request_timeout=TIMEOUT_S)

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create the ConfigMap, or replace its data."""
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
                "data": data}
        try:
            self._core.create_namespaced_config_map(namespace, body, _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._core.patch_namespaced_config_map(name, namespace, {"data": data}, _content_type=MERGE,
                                                   _request_timeout=REQUEST_TIMEOUT_S)
