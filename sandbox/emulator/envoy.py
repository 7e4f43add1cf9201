"""The sidecars' Envoy as its admin API shows it: inbound listener and RBAC counters, and when TLS handshakes happen.

Each injected pod gets an admin server on 127.0.0.1, which the pod's kwok PortForward maps to port 9901 (Kuma's
`kuma.io/envoy-admin-port`). It serves `/stats` as Envoy's admin does (GET or POST; text `name: value` lines sorted
by name, or `format=json` `{"stats": [{"name", "value"}]}`; `filter=<regex>` matched anywhere in the name;
`usedonly`). Counter names, for each inbound (a Service port selecting the pod, at the pod IP and target port):
- `listener.<pod IP>_<port>.downstream_cx_total` and, when the inbound has TLS (the proxy serves a certificate),
  `listener.<pod IP>_<port>.ssl.{handshake,connection_error,fail_verify_error,fail_verify_no_cert,no_certificate,
  session_reused}`: Kuma 2.12.3 inbound_proxy_generator.go gives the inbound listener no stat prefix, so Envoy names
  listener stats after its address; Kuma's own e2e reads `listener.*_80.ssl.handshake`
  (test/e2e_env/kubernetes/meshidentity/spire.go);
- `http.localhost_<port>.rbac.{allowed,denied,shadow_allowed,shadow_denied}`: on an HTTP inbound Kuma puts the RBAC
  filter into the HTTP connection manager (meshtrafficpermission/xds/rbac_configurer.go, legacy_rbac_configurer.go),
  whose stat prefix is the local cluster `localhost:<port>` sanitized (names.GetLocalClusterName,
  util/xds/metric_sanitizer.go); Envoy's HTTP RBAC filter counts under `http.<prefix>.rbac.`.
Counters start at 0 with the pod's sidecar; once an inbound had TLS its ssl and RBAC counters stay listed.

`/certs` lists the certificate the proxy serves, as Envoy's admin does (`{"certificates": [{"ca_cert": [...],
"cert_chain": [{"path", "serial_number", "subject_alt_names": [{"uri": ...}], ...}]}]}`; none while it has no
certificate): the SPIRE SVID's SPIFFE ID under a MeshIdentity, the mesh CA's `spiffe://<mesh>/<service>` ones before.

Connections are modelled as Envoy's upstream HTTP/1.1 pool keeps them: one connection between two proxies, reused
across requests, re-established when either side's certificate changes or the server's inbound configuration changes
(an LDS update drains the listener's connections). A new connection is one `downstream_cx_total` and one TLS
handshake: completed (`ssl.handshake`; the RBAC filter then counts every request, a 403 included); the client
rejecting the server's certificate (another CA or trust domain: with TLS 1.3 the server's certificate arrives first)
is an alert the server counts as `ssl.connection_error`, as are plaintext bytes (Envoy's ssl_socket.cc
drainErrorQueue counts connection_error for TLS errors other than a missing client certificate or a failed
verification). A client without a certificate (its SDS secret is missing) closes before sending TLS, and a server
without one accepts nothing: no counter moves. Failed connections are not pooled: each request tries again.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sandbox.emulator import policy
from sandbox.emulator.policy import Decision, Mode, Proxy, Transport

log = logging.getLogger("emulator.envoy")
ADMIN_PORT = 9901
SSL_COUNTERS = ("connection_error", "fail_verify_error", "fail_verify_no_cert", "handshake", "no_certificate",
                "session_reused")
RBAC_COUNTERS = ("allowed", "denied", "shadow_allowed", "shadow_denied")
POLL_S = 2.0  # serve_forever's shutdown poll: an admin server is stopped in the background


def listener_prefix(pod_ip: str, port: int) -> str:
    """The stats prefix of the inbound listener at pod_ip:port (address with ':' as '_')."""
    return f"listener.{pod_ip}_{port}."


def rbac_prefix(port: int) -> str:
    """The stats prefix of the inbound's HTTP RBAC filter."""
    return f"http.localhost_{port}.rbac."


class Sidecar:
    """One pod's Envoy counters and admin server; `inbounds()` gives (pod IP, port) of its inbounds now and
    `tls()` whether they have TLS now."""

    def __init__(self, name: str, inbounds: Callable[[], list[tuple[str, int]]], tls: Callable[[], bool],
                 identities: Callable[[], tuple[str, ...]]) -> None:
        self.name, self._inbounds, self._tls, self.identities = name, inbounds, tls, identities
        self._counters: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._had_tls = False  # Envoy keeps a listener's stats when its TLS context goes away
        self._http = _AdminServer(self)
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, args=(POLL_S,), name=f"admin-{name}", daemon=True).start()

    def count(self, name: str) -> None:
        """Add one to counter `name`."""
        with self._lock:
            self._counters[name] += 1

    def stats(self) -> dict[str, int]:
        """Every counter the admin API shows now, by name."""
        names = []
        tls = self._had_tls = self._had_tls or self._tls()
        for ip, port in self._inbounds():
            names.append(listener_prefix(ip, port) + "downstream_cx_total")
            if tls:
                names += [listener_prefix(ip, port) + "ssl." + c for c in SSL_COUNTERS]
                names += [rbac_prefix(port) + c for c in RBAC_COUNTERS]
        with self._lock:
            return {name: self._counters.get(name, 0) for name in sorted(names)}

    def stop(self) -> None:
        """Stop serving, in the background."""
        threading.Thread(target=self._close, name=f"stop-admin-{self.name}", daemon=True).start()

    def _close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def certificates(uris: tuple[str, ...]) -> bytes:
    """Envoy's /certs answer for a proxy serving a certificate with these URI SANs (none: no certificate)."""
    chain = [{"path": "<inline>", "serial_number": f"{abs(hash(uris)) % 16 ** 16:016x}",
              "subject_alt_names": [{"uri": uri} for uri in uris], "days_until_expiration": "0",
              "valid_from": "", "expiration_time": ""}] if uris else []
    return json.dumps({"certificates": [{"ca_cert": [], "cert_chain": chain}] if chain else []},
                      separators=(",", ":")).encode()


def render(stats: Mapping[str, int], query: str) -> tuple[str, bytes]:
    """Envoy's /stats answer (content type, body) for the query string (format=json, filter=<regex>, usedonly)."""
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    pattern = re.compile(params["filter"]) if params.get("filter") else None
    shown = [(n, v) for n, v in stats.items() if (pattern is None or pattern.search(n))
             and ("usedonly" not in params or v)]
    if params.get("format") == "json":
        body = json.dumps({"stats": [{"name": n, "value": v} for n, v in shown]}, separators=(",", ":"))
        return "application/json", body.encode()
    return "text/plain; charset=UTF-8", "".join(f"{n}: {v}\n" for n, v in shown).encode()


class _AdminHandler(BaseHTTPRequestHandler):
    server: _AdminServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/stats":
            try:
                content_type, body = render(self.server.sidecar.stats(), url.query)
                status = 200
            except re.error as exc:
                content_type, body, status = "text/plain", f"Invalid regex: {exc}\n".encode(), 400
        elif url.path == "/certs":
            content_type, body, status = "application/json", certificates(self.server.sidecar.identities()), 200
        elif url.path == "/ready":
            content_type, body, status = "text/plain; charset=UTF-8", b"LIVE\n", 200
        else:
            content_type, body, status = "text/plain", b"invalid path. admin commands are: /certs /ready /stats\n", 404
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class signature
        log.debug(format, *args)


class _AdminServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        super().__init__(("127.0.0.1", 0), _AdminHandler)


class Connections:
    """Envoy's upstream connections between proxies, and what each request does to the server's counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: dict[tuple[str, str, int], tuple] = {}  # (client uid, server uid, port) -> the connection's config

    def request(self, client: Proxy, client_uid: str, server: Proxy, server_uid: str, server_ip: str, port: int,
                permissions: tuple[policy.Permission, ...], sidecar: Sidecar | None) -> Decision:
        """One request from `client` to `server`'s inbound `port`: the decision, counted on the server's sidecar."""
        decision = policy.decide(client, server, permissions)
        key = (client_uid, server_uid, port)
        config = ((client.mode, client.spiffe_ids), policy.inbound_config(server, permissions))
        listener = listener_prefix(server_ip, port)
        with self._lock:
            if decision.transport is not Transport.HANDSHAKE:
                self._pool.pop(key, None)
            new = decision.transport is Transport.HANDSHAKE and self._pool.get(key) != config
            if new:
                self._pool[key] = config
        if sidecar is None or decision.transport in (Transport.PLAINTEXT, Transport.NO_CLIENT_CERT,
                                                     Transport.NO_SERVER_CERT):
            return decision
        if decision.transport in (Transport.UNTRUSTED, Transport.PLAINTEXT_CLIENT):
            sidecar.count(listener + "downstream_cx_total")
            sidecar.count(listener + "ssl.connection_error")
            return decision
        if new:
            sidecar.count(listener + "downstream_cx_total")
            sidecar.count(listener + "ssl.handshake")
        sidecar.count(rbac_prefix(port) + ("allowed" if decision.allowed else "denied"))
        if decision.shadow_deny:
            sidecar.count(rbac_prefix(port) + "shadow_denied")
        return decision

    def forget(self, uid: str) -> None:
        """Drop the connections of a pod that is gone."""
        with self._lock:
            for key in [k for k in self._pool if uid in k[:2]]:
                del self._pool[key]


def has_tls(proxy: Proxy) -> bool:
    """True when the proxy's inbound listeners terminate mTLS (it serves a certificate)."""
    return proxy.mode in (Mode.LEGACY, Mode.IDENTITY)
