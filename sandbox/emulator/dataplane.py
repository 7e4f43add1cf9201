"""The data plane: one HTTP server on 127.0.0.1 per demo pod and an Envoy admin server per injected pod, reached
through the pod's kwok PortForward on ports 5050 and 9901.

`kubectl port-forward svc/demo-app 5050:5050` enters the demo-app pod on localhost, so the request reaches the app
without passing its own inbound proxy; the app's call to kv crosses kv's inbound, where `policy.decide` judges it
against the published view (a denial is the 403 Envoy's RBAC filter answers) over the connections `envoy` models,
which count on kv's sidecar. kv's keys live in its server object, so they are lost when the kv pod is replaced. Fault
knobs: dropped connections and transient 503s.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from sandbox.emulator import envoy, kuma, policy
from sandbox.emulator import store as st
from sandbox.emulator.config import ConfigSource
from sandbox.emulator.demoapp import App, KvUnreachable, Request, Response
from sandbox.emulator.kubeapi import Writer
from sandbox.emulator.world import Converger

log = logging.getLogger("emulator.dataplane")
IMAGE = "kuma-counter-demo"
APP_PORT = 5050
PORT_FORWARDS = st.Kind("portforwards", "kwok.x-k8s.io", "v1alpha1")
UNAVAILABLE = Response(503, b"upstream connect error or disconnect/reset before headers. reset reason: "
                            b"connection termination", {"Content-Type": "text/plain"})


def app_container(pod: Mapping) -> Mapping | None:
    """The kuma-counter-demo container of a pod, if it runs one."""
    return next((c for c in pod.get("spec", {}).get("containers", []) if IMAGE in c.get("image", "")), None)


def _field(pod: Mapping, path: str) -> str:
    """A downward-API fieldRef value: metadata.name|namespace|uid, metadata.labels['k'], metadata.annotations['k']."""
    meta = pod["metadata"]
    for kind in ("labels", "annotations"):
        prefix = f"metadata.{kind}['"
        if path.startswith(prefix) and path.endswith("']"):
            return (meta.get(kind) or {}).get(path[len(prefix):-2], "")
    return str(meta.get(path.removeprefix("metadata."), "")) if path.startswith("metadata.") else ""


def target_port(pod: Mapping, service_port: Mapping) -> int:
    """The pod port a Service port sends to: its targetPort, a number or a named container port (default: port)."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    return next((p["containerPort"] for c in pod["spec"].get("containers", []) for p in c.get("ports", [])
                 if p.get("name") == target), 0)


def env_value(pod: Mapping, container: Mapping, name: str) -> str:
    """The value the container sees for env var `name` (literal or metadata fieldRef; '' when unset)."""
    for var in container.get("env", []):
        if var.get("name") == name:
            ref = (var.get("valueFrom") or {}).get("fieldRef")
            return _field(pod, ref.get("fieldPath", "")) if ref else var.get("value", "")
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: Callable[[Request], Response], drop_share: Callable[[], float],
                 unavailable_share: Callable[[], float]) -> None:
        self.answer, self.drop_share, self.unavailable_share = handler, drop_share, unavailable_share
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request: socket.socket, client_address: object) -> bool:
        """Close a share of connections without an answer (the drop_port_forward_share knob)."""
        return random.random() >= self.drop_share()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def send_response(self, code: int, message: str | None = None) -> None:
        """Status line and Date, like Go's net/http (no Server header)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        req = Request(self.command, self.path, dict(self.headers.items()), self.rfile.read(length) if length else b"")
        try:
            delay_ms = int(req.header("x-set-response-delay-ms") or 0)
        except ValueError:
            delay_ms = 0
        if delay_ms > 0 and self.path.startswith("/api"):
            time.sleep(delay_ms / 1000)
        share = self.server.unavailable_share()
        resp = UNAVAILABLE if share and random.random() < share else self.server.answer(req)
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = do_POST = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class signature
        log.debug("%s %s", self.address_string(), format % args)


class PodServer:
    """The app of one pod, served on an ephemeral port of 127.0.0.1."""

    def __init__(self, pod: Mapping, app: App, config: ConfigSource, demo_app: bool) -> None:
        self.pod = pod
        self.app = app
        share = (lambda: config.current.transient_503_share) if demo_app else (lambda: 0.0)
        self._http = _Server(app.handle, lambda: config.current.drop_port_forward_share, share)
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name=f"pod-{pod['metadata']['name']}", daemon=True).start()

    def stop(self) -> None:
        """Stop serving and close the port, in the background: `shutdown` waits up to serve_forever's 0.5 s poll,
        and a caller (the pod watch, or the emulator's exit) must not wait for each server in turn."""
        threading.Thread(target=self._close, name=f"stop-{self.pod['metadata']['name']}", daemon=True).start()

    def _close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def _workload(pod: Mapping) -> str:
    """`namespace/app` of a pod (its `app` label, else its name)."""
    meta = pod["metadata"]
    return f"{meta['namespace']}/{(meta.get('labels') or {}).get('app') or meta['name']}"


class DataPlane:
    """Starts and stops pod servers (the demo app) and sidecars (Envoy's admin API) as pods come and go, and routes
    demo-app's calls to kv through Envoy's connections."""

    def __init__(self, store: st.Store, writer: Writer, config: ConfigSource, converger: Converger) -> None:
        self._store, self._writer, self._config, self._converger = store, writer, config, converger
        self._servers: dict[str, PodServer] = {}
        self._sidecars: dict[str, envoy.Sidecar] = {}
        self._pods: dict[str, Mapping] = {}  # the latest object of each served pod
        self._lock = threading.Lock()
        self._round_robin = itertools.count()
        self._decisions: dict[tuple[str, str], policy.Decision] = {}
        self._connections = envoy.Connections()
        self._traffic: collections.Counter[tuple[str, str, bool]] = collections.Counter()

    def on_pod(self, event: str, pod: Mapping) -> None:
        """Store listener: serve each scheduled demo pod and injected pod, stop when it terminates."""
        uid, container = pod["metadata"].get("uid", ""), app_container(pod)
        gone = event == "DELETED" or pod["metadata"].get("deletionTimestamp")
        if gone or (container is None and not kuma.injected(pod)):
            self._stop_pod(uid)
            return
        if not pod["spec"].get("nodeName"):
            return
        with self._lock:
            self._pods[uid] = pod
            if uid in self._servers or uid in self._sidecars:
                if uid in self._servers:
                    self._servers[uid].pod = pod
                return
            forwards = []
            if container is not None:
                kv_url = env_value(pod, container, "KV_URL")
                app = App(env_value(pod, container, "APP_VERSION"), self._kv_client(uid, kv_url) if kv_url else None)
                server = self._servers[uid] = PodServer(pod, app, self._config, demo_app=bool(kv_url))
                forwards.append((APP_PORT, server.port))
            if kuma.injected(pod):
                sidecar = self._sidecars[uid] = envoy.Sidecar(pod["metadata"]["name"], lambda: self._inbounds(uid),
                                                              lambda: self._tls(uid), lambda: self._identities(uid))
                forwards.append((envoy.ADMIN_PORT, sidecar.port))
        self._forward(pod, forwards)
        log.info("serving %s/%s on %s", pod["metadata"]["namespace"], pod["metadata"]["name"],
                 ", ".join(f"{port} -> 127.0.0.1:{local}" for port, local in forwards))

    def _stop_pod(self, uid: str) -> None:
        with self._lock:
            parts = [self._servers.pop(uid, None), self._sidecars.pop(uid, None)]
            self._pods.pop(uid, None)
        for part in parts:
            if part is not None:
                part.stop()
        self._connections.forget(uid)

    def stop(self) -> None:
        """Stop every pod server and sidecar."""
        with self._lock:
            parts, self._servers, self._sidecars = [*self._servers.values(), *self._sidecars.values()], {}, {}
        for part in parts:
            part.stop()

    def _forward(self, pod: Mapping, forwards: list[tuple[int, int]]) -> None:
        meta = pod["metadata"]
        body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                                  "uid": meta["uid"]}]},
                "spec": {"forwards": [{"ports": [port], "target": {"address": "127.0.0.1", "port": local}}
                                      for port, local in forwards]}}
        self._writer.delete(PORT_FORWARDS, meta["namespace"], meta["name"])
        self._writer.create(PORT_FORWARDS, meta["namespace"], body)

    def _inbounds(self, uid: str) -> list[tuple[str, int]]:
        """(pod IP, port) of each inbound Kuma gives the pod: the target ports of the Services selecting it."""
        with self._lock:
            pod = self._pods.get(uid)
        if pod is None or not (pod.get("status") or {}).get("podIP"):
            return []
        services = [s for s in self._store.list(st.SERVICES, pod["metadata"]["namespace"]) if kuma.selects_pod(s, pod)]
        ports = sorted({target_port(pod, p) for s in services for p in s.get("spec", {}).get("ports", [])})
        return [(pod["status"]["podIP"], port) for port in ports if port]

    def _tls(self, uid: str) -> bool:
        with self._lock:
            pod = self._pods.get(uid)
        return pod is not None and envoy.has_tls(self._converger.published.proxy_of(pod))

    def _identities(self, uid: str) -> tuple[str, ...]:
        """The SPIFFE IDs of the certificate the pod's proxy serves now (none without one)."""
        with self._lock:
            pod = self._pods.get(uid)
        proxy = self._converger.published.proxy_of(pod) if pod is not None else None
        return proxy.spiffe_ids if proxy is not None and envoy.has_tls(proxy) else ()

    def _endpoints(self, host: str, port: int, default_namespace: str) -> tuple[list[PodServer], Mapping | None]:
        """The ready pod servers behind the Service a kv URL host names (<svc>[.<namespace>[.svc...]]), and the
        Service port called."""
        parts = host.split(".")
        service = self._store.get(st.SERVICES, parts[1] if len(parts) > 1 else default_namespace, parts[0])
        if service is None:
            return [], None
        called = next((p for p in service.get("spec", {}).get("ports", []) if p.get("port") == port), None)
        with self._lock:
            return [s for s in self._servers.values() if kuma.selects_pod(service, s.pod) and kuma.pod_ready(s.pod)], \
                called

    def traffic(self) -> list[dict]:
        """Every decision the servers' inbounds took since the emulator started, counted per client and server
        workload (`namespace/app`): how a test proves that traffic was never denied."""
        with self._lock:
            counts = dict(self._traffic)
        pairs = sorted({(c, s) for c, s, _ in counts})
        return [{"client": c, "server": s, "allowed": counts.get((c, s, True), 0),
                 "denied": counts.get((c, s, False), 0)} for c, s in pairs]

    def _log_decision(self, client: Mapping, server: Mapping, decision: policy.Decision) -> None:
        """Log a client/server pair's decision when it differs from the last one logged."""
        pair = (client["metadata"]["uid"], server["metadata"]["uid"])
        if self._decisions.get(pair) != decision:
            self._decisions[pair] = decision
            log.info("%s -> %s: %s (%s)", client["metadata"]["name"], server["metadata"]["name"],
                     "allowed" if decision.allowed else "denied", decision.reason)

    def _kv_client(self, client_uid: str, kv_url: str) -> Callable[[str, str, dict | None], tuple[int, dict | None]]:
        url = urlsplit(kv_url)
        host, url_port = url.hostname or "", url.port or 80

        def call(method: str, key: str, body: dict | None) -> tuple[int, dict | None]:
            with self._lock:
                client = self._servers.get(client_uid)
            if client is None:
                raise KvUnreachable("the client pod is gone")
            servers, service_port = self._endpoints(host, url_port, client.pod["metadata"]["namespace"])
            if not servers or service_port is None:
                raise KvUnreachable(f"no healthy upstream for {host}")
            server = servers[next(self._round_robin) % len(servers)]
            view = self._converger.published
            with self._lock:
                sidecar = self._sidecars.get(server.pod["metadata"]["uid"])
            decision = self._connections.request(
                view.proxy_of(client.pod), client_uid, view.proxy_of(server.pod), server.pod["metadata"]["uid"],
                (server.pod.get("status") or {}).get("podIP", ""), target_port(server.pod, service_port),
                view.permissions, sidecar)
            self._log_decision(client.pod, server.pod, decision)
            with self._lock:
                self._traffic[(_workload(client.pod), _workload(server.pod), decision.allowed)] += 1
            if not decision.allowed:
                return 403, None  # RBAC: access denied
            payload = b"" if body is None else json.dumps(body).encode()
            resp = server.app.handle(Request(method, f"/api/key-value/{key}", {}, payload))
            return resp.status, json.loads(resp.body) if resp.body else None

        return call
