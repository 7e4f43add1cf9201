"""The admission webhooks of Kong Mesh's control plane and of SPIRE's controller manager, on 127.0.0.1 over TLS.

The charts point their webhook configurations at `https://127.0.0.1:<port>/kuma/<system namespace>/<path>` and
`.../spire/<release namespace>/<path>`. A webhook whose backing pods are not ready answers 503, so the API server
applies the configuration's failurePolicy exactly as it would with a Service without endpoints.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from sandbox.emulator import injector, kuma, spire, validation
from sandbox.emulator import store as st
from sandbox.emulator.certs import ServingCerts
from sandbox.emulator.config import ConfigSource
from sandbox.emulator.kubeapi import TIMEOUT_S
from sandbox.rawapi import path, request

log = logging.getLogger("emulator.webhooks")
TRAFFIC_PATH = "/world/traffic"


class Unavailable(Exception):
    """The webhook's backend has no ready pod: the API server sees what a Service without endpoints gives."""


class Admission:
    """Decides AdmissionReview requests for each webhook path."""

    def __init__(self, store: st.Store, config: ConfigSource, api: ApiClient) -> None:
        self._store, self._config, self._api = store, config, api

    def _control_plane(self, namespace: str) -> kuma.ControlPlane:
        cp = kuma.control_plane(self._store, namespace)
        if cp is None or not cp.ready or self._config.current.control_plane_crash_loop:
            raise Unavailable(f'no endpoints available for service "{kuma.CONTROL_PLANE_APP}"')
        return cp

    def _spire_ready(self, namespace: str) -> None:
        conf = spire.config(self._store)
        ready = conf is not None and conf.namespace == namespace and not self._config.current.spire_server_not_ready \
            and any(kuma.pod_ready(p) for p in spire.server_pods(self._store, conf))
        if not ready:
            service = conf.webhook_service if conf is not None else "spire-controller-manager-webhook"
            raise Unavailable(f'no endpoints available for service "{service}"')

    def _namespace(self, name: str) -> Mapping | None:
        cached = self._store.get(st.NAMESPACES, "", name)
        if cached is not None or not name:
            return cached
        try:
            return request(self._api, "GET", path("", "v1", "namespaces", "", name), timeout_s=TIMEOUT_S)
        except ApiException:
            return None

    def review(self, path: str, request: Mapping) -> dict:
        """The AdmissionResponse (without uid) for `request` sent to `path`; raises Unavailable or KeyError."""
        owner, namespace, hook = path.strip("/").split("/", 2)
        obj = request.get("object") or request.get("oldObject") or {}
        if owner == "kuma":
            cp = self._control_plane(namespace)
            if hook == "inject-sidecar":
                return self._inject(obj, request.get("namespace", ""), cp)
            if hook == "default-kuma-io-v1alpha1-mesh":
                return self._default(obj, request.get("namespace", ""), namespace)
            if hook == "validate-kuma-io-v1alpha1":
                return _verdict(validation.kuma_resource({**obj, "kind": request["kind"]["kind"]},
                                                         request.get("operation", ""), namespace))
        if owner == "spire":
            self._spire_ready(namespace)
            if hook == "validate-spire-spiffe-io-v1alpha1-clusterspiffeid":
                return _verdict(validation.cluster_spiffe_id(obj.get("spec") or {}))
            if hook == "validate-spire-spiffe-io-v1alpha1-clusterfederatedtrustdomain":
                return _verdict(None)
        raise KeyError(path)

    def _inject(self, pod: Mapping, namespace: str, cp: kuma.ControlPlane) -> dict:
        try:
            ops = injector.patch(pod, self._namespace(namespace), cp)
        except injector.InjectionError as exc:
            return _verdict(validation.errored(str(exc)))
        if ops:
            log.info("injected a pod of %s (SPIRE socket: %s)", namespace,
                     any(o["path"] == "/spec/volumes" and any(v["name"] == kuma.SPIRE_VOLUME for v in o["value"])
                         for o in ops))
        return _patched(ops)

    def _default(self, obj: Mapping, namespace: str, system_namespace: str) -> dict:
        kind = obj.get("kind", "")
        if denied := validation.namespace_check(kind, namespace, system_namespace):
            return _verdict(denied)
        if not namespace:
            return _verdict(None)  # cluster-scoped (Mesh): nothing to add
        meta = {**obj.get("metadata", {}), "namespace": namespace}
        return _patched([{"op": "add", "path": "/metadata/labels",
                          "value": kuma.computed_labels(kind, meta, system_namespace)}])


def _verdict(status: dict | None) -> dict:
    return {"allowed": True} if status is None else {"allowed": False, "status": status}


def _patched(ops: list[dict]) -> dict:
    if not ops:
        return {"allowed": True}
    return {"allowed": True, "patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(ops).encode()).decode()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        """The world's own status (not a Kubernetes webhook): what its data plane allowed and denied."""
        if self.path.split("?", 1)[0] != TRAFFIC_PATH:
            return self._send(404, b"no such path", "text/plain")
        self._send(200, json.dumps(self.server.world()).encode(), "application/json")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        request = review.get("request") or {}
        try:
            response = self.server.admission.review(self.path.split("?", 1)[0], request)
        except Unavailable as exc:
            return self._send(503, str(exc).encode(), "text/plain")
        except KeyError:
            return self._send(404, b"no such webhook", "text/plain")
        if not response["allowed"]:
            log.info("denied %s %s %s/%s: %s", request.get("operation"), request.get("kind", {}).get("kind"),
                     request.get("namespace", ""), request.get("name", ""), response["status"]["message"])
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": request.get("uid", ""), **response}}
        self._send(200, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class signature
        log.debug(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, admission: Admission, certs: ServingCerts) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.admission = admission
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(certs.cert_file, certs.key_file)

    def finish_request(self, request, client_address) -> None:  # noqa: ANN001 - base class signature
        """TLS handshake in the connection's own thread, then the HTTP exchange."""
        request.settimeout(TIMEOUT_S)
        try:
            tls = self._tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        super().finish_request(tls, client_address)


def serve(admission: Admission, certs: ServingCerts, world: Callable[[], object]) -> str:
    """Serve the webhooks, and the world's own status at GET /world/traffic (`world()` as JSON), in a daemon
    thread; return the base URL (https://127.0.0.1:<port>)."""
    server = _Server(admission, certs)
    server.world = world
    threading.Thread(target=server.serve_forever, name="webhooks", daemon=True).start()
    return f"https://127.0.0.1:{server.server_address[1]}"
