"""The kuma-counter-demo app (ghcr.io/kumahq/kuma-counter-demo), answer for answer.

One image, two roles: with KV_URL set it is demo-app and serves `/api/counter`, which reads and writes keys of kv
through `/api/key-value/<key>`; without it, it is kv, which keeps the keys in memory. Response bodies, headers and the
fault headers (`x-set-response-status-code`, `x-failure-percentage`; the delay header is applied by the server) follow
app/internal/base of the upstream repository.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

ERRORS_URL = "https://github.com/kumahq/kuma-counter-demo/blob/main/ERRORS.md#"
COUNTER_KEY, ZONE_KEY = "counter", "zone"
CAS_RETRIES = 5


@dataclass(frozen=True)
class Request:
    """An HTTP request as the app sees it."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str:
        """A header value by case-insensitive name ('' when absent)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")


@dataclass(frozen=True)
class Response:
    """An HTTP response."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class KvUnreachable(Exception):
    """demo-app could not get any HTTP answer from kv (no endpoint, connection reset)."""


# demo-app's view of kv: (method, key, JSON body or None) -> (status, parsed JSON body or None)
KvClient = Callable[[str, str, dict | None], tuple[int, dict | None]]


def _json(obj: object) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()  # Go's json.Encoder adds a newline


def error_body(status: int, error_type: str, title: str) -> dict:
    """The app's api.Error in Go field order; `instance` is the request's trace ID (32 random hex digits)."""
    return {"instance": secrets.token_hex(16), "status": status, "title": title, "type": ERRORS_URL + error_type}


class App:
    """One pod's app: demo-app when it has a kv client (KV_URL set), else kv with its keys in memory."""

    def __init__(self, version: str, kv: KvClient | None) -> None:
        self.version = version
        self._kv_client = kv
        self._keys: dict[str, dict] = {}
        self._lock = threading.Lock()

    @property
    def is_demo_app(self) -> bool:
        """True for the demo-app role (KV_URL set)."""
        return self._kv_client is not None

    # responses
    def _respond(self, req: Request, status: int, body: dict) -> Response:
        original = status
        if original < 500:
            try:
                override = int(req.header("x-set-response-status-code") or 0)
            except ValueError:
                override = 0
            status = override or status
            if status < 400:
                try:
                    percentage = int(req.header("x-failure-percentage") or 0)
                except ValueError:
                    percentage = 0
                if percentage > 0 and (percentage >= 100 or random.randrange(100) < percentage):
                    status = 500
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Demo-App-Version": self.version,
                   "X-Original-Status-Code": str(original)}
        return Response(status, _json(body), headers)

    def _error(self, req: Request, status: int, error_type: str, title: str) -> Response:
        return self._respond(req, status, error_body(status, error_type, title))

    # routing
    def handle(self, req: Request) -> Response:
        """Answer one request."""
        path = req.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/api/version" and req.method == "GET":
            return self._respond(req, 200, {"version": self.version})
        if path == "/api/counter" and req.method in ("GET", "POST", "DELETE"):
            if not self.is_demo_app:
                return self._error(req, 400, "KV-DISABLED", "kv api url is not set")
            return {"GET": self._get_counter, "POST": self._post_counter, "DELETE": self._delete_counter}[
                req.method](req)
        if path == "/api/key-value" and req.method == "GET" or path.startswith("/api/key-value/"):
            if self.is_demo_app:
                return self._error(req, 400, "KV-DISABLED", "kv api endpoints disabled")
            return self._key_value(req, path.removeprefix("/api/key-value").lstrip("/"))
        return Response(404, b"404 page not found\n", {"Content-Type": "text/plain; charset=utf-8"})

    # kv role
    def _key_value(self, req: Request, key: str) -> Response:
        with self._lock:
            if not key:
                return self._respond(req, 200, {"keys": list(self._keys)})
            if req.method == "GET":
                if key not in self._keys:
                    return self._error(req, 404, "KV-NOT-FOUND", f'no key "{key}"')
                return self._respond(req, 200, self._keys[key])
            if req.method == "DELETE":
                if key not in self._keys:
                    return self._error(req, 404, "KV-NOT-FOUND", f'no key "{key}"')
                return self._respond(req, 200, self._keys.pop(key))
            if req.method == "POST":
                try:
                    body = json.loads(req.body or b"null")
                    value, expect = str(body["value"]), body.get("expect")
                except (ValueError, TypeError, KeyError) as exc:
                    return self._error(req, 400, "INVALID-JSON", f"failed to parse: {exc}")
                current = self._keys.get(key, {}).get("value", "")
                if expect is not None and current != expect:
                    return self._error(req, 409, "KV-CONFLICT",
                                       f'CaS failed for key "{key}" expect "{expect}" has "{current}"')
                self._keys[key] = {"value": value}
                return self._respond(req, 200, self._keys[key])
        return Response(405, b"", {})

    # demo-app role
    def _get_key(self, key: str) -> str:
        """demo-app's getKey: '' on 404, the value on 200, an exception on anything else."""
        status, body = self._kv_client("GET", key, None)
        if status == 404:
            return ""
        if status != 200 or body is None:
            raise KvUnreachable(f"request to kv failed with statusCode: {status}")
        return str(body.get("value", ""))

    def _get_counter(self, req: Request) -> Response:
        try:
            counter, zone = self._get_key(COUNTER_KEY), self._get_key(ZONE_KEY)
        except KvUnreachable:
            return self._error(req, 500, "INTERNAL-ERROR", "failed to retrieve zone")
        return self._respond(req, 200, {"counter": int(counter or 0), "zone": zone})

    def _post_counter(self, req: Request) -> Response:
        try:
            zone = self._get_key(ZONE_KEY)
        except KvUnreachable:
            return self._error(req, 500, "INTERNAL-ERROR", "failed to retrieve zone")
        for _ in range(CAS_RETRIES + 1):
            try:
                counter = self._get_key(COUNTER_KEY)
            except KvUnreachable:
                return self._error(req, 500, "INTERNAL-ERROR", "failed to retrieve zone")
            try:
                status, body = self._kv_client("POST", COUNTER_KEY, {"value": str(int(counter or 0) + 1),
                                                                      "expect": counter})
            except KvUnreachable:
                return self._error(req, 500, "INTERNAL-ERROR", "failed sending request")
            if status == 200 and body is not None:
                return self._respond(req, 200, {"counter": int(body.get("value", 0)), "zone": zone})
            if status == 404:
                return self._error(req, 404, "KV-NOT-FOUND", "counter key not found")
            if status != 409:
                return self._error(req, status, "INTERNAL-ERROR", "failed sending request")
        return self._error(req, 409, "KV-CONFLICT", "out of retries without success")

    def _delete_counter(self, req: Request) -> Response:
        try:
            status, _ = self._kv_client("DELETE", COUNTER_KEY, None)
        except KvUnreachable:
            return self._error(req, 500, "INTERNAL-ERROR", "failed sending request")
        if status == 404:
            return self._error(req, 404, "KV-NOT-FOUND", "Key not found")
        try:
            zone = self._get_key(ZONE_KEY)
        except KvUnreachable:
            return self._error(req, 500, "INTERNAL-ERROR", "failed to retrieve zone")
        return self._respond(req, 200, {"counter": 0, "zone": zone})
