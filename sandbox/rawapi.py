"""Kubernetes API requests by REST path through an official-client ApiClient, objects as plain dicts.

The sandbox's processes (the emulator, and the start's node wait) read and write a handful of kinds. The client's
typed API classes would cost them more than their work: importing `CoreV1Api` alone loads some thousand
generated methods, once in every emulator of every sandbox. The ApiClient still brings the
kubeconfig's address, TLS and credentials; errors are the client's `ApiException`, with the HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

JSON = "application/json"


def path(group: str, version: str, plural: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    """The REST path of a collection, an object or one of its subresources (`group` "" for the core API)."""
    parts = [f"/apis/{group}/{version}" if group else f"/api/{version}"]
    parts += ["namespaces", namespace] if namespace else []
    parts += [plural, *([name] if name else []), *([sub] if sub else [])]
    return "/".join(parts)


def _send(api: ApiClient, method: str, resource: str, query: list[tuple[str, str]], body: Any, content_type: str,
          timeout: float | tuple[float, float]):
    method, url, headers, body, _ = api.param_serialize(
        method, resource, query_params=query, header_params={"Accept": JSON, "Content-Type": content_type}, body=body,
        auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, body, _request_timeout=timeout)
    if not 200 <= resp.status < 300:
        raise ApiException(status=resp.status, reason=resp.reason, body=resp.read().decode(errors="replace"))
    return resp


def request(api: ApiClient, method: str, resource: str, *, timeout_s: float, body: Any = None,
            content_type: str = JSON) -> dict:
    """One request to `resource` (a REST path); the decoded answer. Non-2xx raises ApiException."""
    raw = _send(api, method, resource, [], body, content_type, timeout_s).read()
    return json.loads(raw) if raw else {}


def text(api: ApiClient, resource: str, *, timeout_s: float) -> str:
    """GET `resource` as text (a health endpoint such as /readyz); non-2xx raises ApiException with the body."""
    return _send(api, "GET", resource, [], None, JSON, timeout_s).read().decode(errors="replace")


def watch(api: ApiClient, resource: str, timeout_s: int, resource_version: str = "") -> Iterator[dict]:
    """The events of one watch of `resource` ({"type", "object"}), until the server ends it after `timeout_s`.

    Without `resource_version` the server first sends the current objects as ADDED. An ERROR event (410 Gone, for a
    resourceVersion too old) raises ApiException with its code, so the caller lists again.
    """
    params = [("watch", "true"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(timeout_s)),
              *([("resourceVersion", resource_version)] if resource_version else [])]
    resp = _send(api, "GET", resource, params, None, JSON, (10, timeout_s + 30)).response
    buf, ended = b"", False
    try:
        for chunk in resp.stream(4096, decode_content=True):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiException(status=status.get("code", 500), reason=status.get("message", "watch error"))
                yield event
        ended = True
    finally:
        if not ended:  # the caller stopped early: the stream still runs on this connection, so it cannot be reused
            resp.close()
        resp.release_conn()
