"""The demo's counter API, probed the way the guide does: port-forward to a demo-app pod, `POST /api/counter`.

`expect` calls until an answer passes `want` on `consecutive` calls in a row or the window closes. Transient
answers (no answer, or HTTP 502/503/504) are counted, neither success nor a reset of the streak.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from meshid import interrupt
from meshid.errors import ExternalCallError
from meshid.kube import Cluster
from meshid.results import HttpExchange

DENIED_TITLE = "failed to retrieve zone"
TRANSIENT_STATUSES = frozenset({502, 503, 504})


def serving_pod(cluster: Cluster, namespace: str, service: str) -> str:
    """A Running, Ready, not terminating pod behind a Service (what `kubectl port-forward svc/...` picks)."""
    svc = cluster.get("v1", "Service", service, namespace)
    if svc is None:
        raise ExternalCallError(f"port-forward svc/{service}", f"service {namespace}/{service} does not exist")
    selector = ",".join(f"{k}={v}" for k, v in sorted(svc["spec"].get("selector", {}).items()))
    return ready_pod(cluster, namespace, selector, f"port-forward svc/{service}")


def ready_pod(cluster: Cluster, namespace: str, selector: str, what: str) -> str:
    """The newest Running, Ready, not terminating pod of a label selector; a transient error when there is none."""
    pods, _ = cluster.list("v1", "Pod", namespace, label_selector=selector)
    for pod in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True):
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
        if ready and pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
            return pod["metadata"]["name"]
    raise ExternalCallError(what, f"no Running and Ready pod in {namespace} matches {selector}", transient=True)


@dataclass
class Probe:
    """HTTP calls to one pod port through a port-forward, over one client (a client per call would load the CA
    bundle each time); each call on a new connection, as `curl` makes it."""

    base_url: str
    pod: str
    http: httpx.Client

    def call(self, method: str = "POST", path: str = "/api/counter") -> HttpExchange:
        """One call; a transport failure comes back as an exchange with no status and the error."""
        try:
            resp = self.http.request(method, self.base_url + path)
        except httpx.HTTPError as exc:
            return HttpExchange(status=None, body="", error=f"{type(exc).__name__}: {exc}")
        return HttpExchange(status=resp.status_code, body=resp.text)


@contextmanager
def forwarded(cluster: Cluster, namespace: str, pod: str, port: int, timeout_s: float) -> Iterator[Probe]:
    """Plain HTTP calls to `pod:port` through a port-forward on this machine's loopback: no proxy from the
    environment, a new connection per call (as `curl` makes them), and a TLS context that trusts nothing (any https
    would fail), which spares loading the CA bundle for every probe."""
    with cluster.port_forward(namespace, pod, port) as local_port, \
            httpx.Client(timeout=timeout_s, trust_env=False, verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
                         limits=httpx.Limits(max_keepalive_connections=0)) as http:
        yield Probe(f"http://127.0.0.1:{local_port}", pod, http)


@contextmanager
def counter_probe(cluster: Cluster, namespace: str, service: str = "demo-app", port: int = 5050,
                  timeout_s: float = 10.0) -> Iterator[Probe]:
    """A probe of the Service's counter API through a port-forward to one of its pods."""
    with forwarded(cluster, namespace, serving_pod(cluster, namespace, service), port, timeout_s) as probe:
        yield probe


def body_json(exchange: HttpExchange) -> dict:
    """The answer's JSON object, or {} when it has none."""
    try:
        data = json.loads(exchange.body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def denied(exchange: HttpExchange) -> bool:
    """The guide's denial: HTTP 500 with title "failed to retrieve zone"."""
    return exchange.status == 500 and body_json(exchange).get("title") == DENIED_TITLE


def served(exchange: HttpExchange) -> bool:
    """Let in: HTTP 200 with zone == "" (what a GET, which only reads the counter, can show)."""
    return exchange.status == 200 and body_json(exchange).get("zone") == ""


def allowed(exchange: HttpExchange) -> bool:
    """The guide's success: HTTP 200 with counter >= 1 and zone == ""."""
    counter = body_json(exchange).get("counter")
    return served(exchange) and isinstance(counter, int) and counter >= 1


def answer_text(exchange: HttpExchange, limit: int = 200) -> str:
    """An answer for messages: `HTTP <status> <body, cut at limit>` or `no answer (<error>)`."""
    if exchange.status is None:
        return f"no answer ({exchange.error})"
    return f"HTTP {exchange.status} {exchange.body[:limit]}"


def transient(exchange: HttpExchange) -> bool:
    """No answer, or a gateway-style answer that says "try again"."""
    return exchange.status is None or exchange.status in TRANSIENT_STATUSES


@dataclass
class Expectation:
    """How a probe window ended."""

    met: bool
    last: HttpExchange
    calls: int
    transient: int
    elapsed_s: float
    streak: int


def expect(probe: Probe, want: Callable[[HttpExchange], bool], consecutive: int, timeout_s: float,
           interval_s: float = 0.1, streak_interval_s: float = 0.05) -> Expectation:
    """Call until `want` holds `consecutive` times in a row (transient answers skipped) or `timeout_s` passes.

    Calls are `interval_s` apart while waiting for the first wanted answer, `streak_interval_s` apart after it: each
    call is a new connection through the port-forward (20 to 30 ms on a sandbox), so the streak is that many fresh
    requests in a row, and the change it waits for (a policy reaching the proxies) is seen within 0.1 s. A stop
    request (`meshid.interrupt`) ends it between two calls.
    """
    start = time.monotonic()
    calls = noise = streak = 0
    last = HttpExchange(status=None, body="", error="no call made")
    while True:
        interrupt.check()
        last = probe.call()
        calls += 1
        if transient(last):
            noise += 1
        elif want(last):
            streak += 1
        else:
            streak = 0
        elapsed = time.monotonic() - start
        if streak >= consecutive or elapsed + interval_s > timeout_s:
            return Expectation(streak >= consecutive, last, calls, noise, elapsed, streak)
        interrupt.wait(interval_s if streak == 0 else min(interval_s, streak_interval_s))
