"""Envoy's counters as the emulator keeps them: which requests make a TLS handshake, and the admin /stats format."""

from __future__ import annotations

import json

from sandbox.emulator.envoy import Connections, render
from sandbox.emulator.policy import Mode, Permission, Proxy

TD = "default.default.mesh.local"
DEMO_ID = f"spiffe://{TD}/ns/kong-mesh-demo/sa/default"
IP, PORT = "10.0.0.7", 5050
HANDSHAKE = f"listener.{IP}_{PORT}.ssl.handshake"
ERROR = f"listener.{IP}_{PORT}.ssl.connection_error"
ALLOWED, DENIED = f"http.localhost_{PORT}.rbac.allowed", f"http.localhost_{PORT}.rbac.denied"


class Counting:
    """Stands in for a Sidecar: only its counters."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def proxy(app: str, mode: Mode, spiffe_id: str = DEMO_ID) -> Proxy:
    labels = {"app": app, "k8s.kuma.io/namespace": "kong-mesh-demo", "kuma.io/mesh": "default"}
    ids = {Mode.IDENTITY: (spiffe_id,), Mode.LEGACY: (f"spiffe://default/{app}_kong-mesh-demo_svc_5050",)}.get(mode, ())
    return Proxy(name=app, namespace="kong-mesh-demo", mode=mode, labels=labels, spiffe_ids=ids,
                 tags={k: frozenset({v}) for k, v in labels.items()})


def mtp(match_type: str = "Prefix", value: str = f"spiffe://{TD}/ns/kong-mesh-demo", name: str = "mtp") -> Permission:
    return Permission.parse({"metadata": {"name": name, "namespace": "kong-mesh-demo"},
                             "spec": {"rules": [{"default": {"allow": [{"spiffeID": {"type": match_type,
                                                                                     "value": value}}]}}]}},
                            "kong-mesh-system")


def requests(conns: Connections, sidecar: Counting, client: Proxy, server: Proxy, permissions, n: int = 1) -> list:
    return [conns.request(client, "c", server, "s", IP, PORT, tuple(permissions), sidecar).allowed for _ in range(n)]


def test_one_pooled_connection_one_handshake_and_rbac_counts_every_request_a_403_too():
    conns, kv = Connections(), Counting()
    client, server = proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY)
    assert requests(conns, kv, client, server, [], 3) == [False] * 3  # no MTP with rules: default deny, 403
    assert (kv.counters[HANDSHAKE], kv.counters[DENIED]) == (1, 3)
    assert requests(conns, kv, client, server, [mtp()], 2) == [True, True]
    # the inbound's configuration changed (LDS update): its connections were drained, one new handshake
    assert (kv.counters[HANDSHAKE], kv.counters[ALLOWED]) == (2, 2)
    assert ERROR not in kv.counters


def test_a_new_client_certificate_means_a_new_connection():
    conns, kv = Connections(), Counting()
    server = proxy("kv", Mode.IDENTITY)
    requests(conns, kv, proxy("demo-app", Mode.LEGACY), proxy("kv", Mode.LEGACY), [], 2)
    assert kv.counters[HANDSHAKE] == 1
    requests(conns, kv, proxy("demo-app", Mode.IDENTITY), server, [mtp()], 2)
    assert kv.counters[HANDSHAKE] == 2


def test_untrusted_certificates_and_plaintext_count_a_connection_error_per_attempt_and_no_rbac():
    """ssl_socket.cc drainErrorQueue: connection_error unless the error is a missing client certificate or a failed
    verification; the server sees the client's alert (unknown CA) or non-TLS bytes."""
    conns, kv = Connections(), Counting()
    assert requests(conns, kv, proxy("demo-app", Mode.LEGACY), proxy("kv", Mode.IDENTITY), [mtp()], 2) == [False] * 2
    other_td = proxy("demo-app", Mode.IDENTITY, "spiffe://other.org/ns/kong-mesh-demo/sa/default")
    requests(conns, kv, other_td, proxy("kv", Mode.IDENTITY), [mtp()])
    requests(conns, kv, proxy("demo-app", Mode.PLAINTEXT), proxy("kv", Mode.IDENTITY), [mtp()])
    assert kv.counters[ERROR] == 4 and HANDSHAKE not in kv.counters
    assert ALLOWED not in kv.counters and DENIED not in kv.counters


def test_no_certificate_yet_and_plaintext_servers_count_nothing():
    conns, kv = Connections(), Counting()
    requests(conns, kv, proxy("demo-app", Mode.PENDING), proxy("kv", Mode.IDENTITY), [mtp()])
    requests(conns, kv, proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.PENDING), [mtp()])
    assert requests(conns, kv, proxy("demo-app", Mode.PLAINTEXT), proxy("kv", Mode.PLAINTEXT), []) == [True]
    assert kv.counters == {}


def test_allow_with_shadow_deny_counts_a_shadow_denial():
    conns, kv = Connections(), Counting()
    shadow = Permission.parse({"metadata": {"name": "s", "namespace": "kong-mesh-demo"}, "spec": {"rules": [
        {"default": {"allowWithShadowDeny": [{"spiffeID": {"type": "Exact", "value": DEMO_ID}}]}}]}},
        "kong-mesh-system")
    assert requests(conns, kv, proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY), [shadow]) == [True]
    assert kv.counters[f"http.localhost_{PORT}.rbac.shadow_denied"] == 1


STATS = {"http.localhost_5050.rbac.allowed": 2, f"listener.{IP}_5050.ssl.connection_error": 0,
         f"listener.{IP}_5050.ssl.handshake": 1}


def test_stats_text_and_json_with_a_regex_filter_as_envoy_admin_answers():
    content_type, body = render(STATS, "")
    assert content_type.startswith("text/plain")
    assert body.decode() == ("http.localhost_5050.rbac.allowed: 2\n"
                             f"listener.{IP}_5050.ssl.connection_error: 0\nlistener.{IP}_5050.ssl.handshake: 1\n")
    content_type, body = render(STATS, "format=json&filter=listener.*_5050.ssl.handshake")
    assert content_type == "application/json"
    assert json.loads(body) == {"stats": [{"name": f"listener.{IP}_5050.ssl.handshake", "value": 1}]}
    assert render(STATS, "usedonly")[1].decode().count("\n") == 2
