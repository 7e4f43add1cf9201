"""A sidecar's Envoy admin API (port 9901), read through a port-forward: the stats that prove traffic was mTLS.

Kuma's own e2e test of this feature (kumahq/kuma test/e2e_env/kubernetes/meshidentity/spire.go) reads the server's
`/stats?format=json&filter=listener.*_80.ssl.handshake` through the admin port and expects it above zero: Envoy
names a listener's stats after its address (`listener.<ip>_<port>.`), and `ssl.handshake` counts the TLS handshakes
that listener completed. A plaintext inbound has no `ssl.` stats at all.
"""

from __future__ import annotations

import json
import re

from meshid.errors import ExternalCallError
from meshid.kube import Cluster
from meshid.probes import forwarded

ADMIN_PORT = 9901
SIDECAR = "kuma-sidecar"  # the container Kuma's injector adds; a pod without it has no admin API and no mTLS


def parse_stats(data: object) -> dict[str, int]:
    """Counters and gauges of Envoy's `/stats?format=json` (`{"stats": [{"name", "value"}, {"histograms": ...}]}`)."""
    items = data.get("stats", []) if isinstance(data, dict) else []
    return {s["name"]: int(s["value"]) for s in items if isinstance(s, dict) and "name" in s and "value" in s}


def handshakes(stats: dict[str, int], port: int) -> int | None:
    """TLS handshakes completed by the inbound listeners on `port`, or None when they have no TLS stats."""
    pattern = re.compile(rf"listener\.[^ ]*_{port}\.ssl\.handshake")
    found = [value for name, value in stats.items() if pattern.fullmatch(name)]
    return sum(found) if found else None


def listener_stats(cluster: Cluster, namespace: str, pod: str, port: int, timeout_s: float) -> dict[str, int]:
    """The `listener.*_<port>.ssl.*` stats of a pod's sidecar."""
    with forwarded(cluster, namespace, pod, ADMIN_PORT, timeout_s) as admin:
        answer = admin.call("GET", f"/stats?format=json&filter=listener\\..*_{port}\\.ssl\\.")
    what = f"Envoy admin /stats of pod {namespace}/{pod}"
    if answer.status != 200:
        detail = answer.error or f"HTTP {answer.status}: {answer.body[:200]}"
        raise ExternalCallError(what, detail, transient=answer.status is None or answer.status >= 500)
    try:
        return parse_stats(json.loads(answer.body))
    except ValueError:
        raise ExternalCallError(what, f"not Envoy's JSON stats: {answer.body[:200]!r}") from None


def inbound_handshakes(cluster: Cluster, namespace: str, pod: str, port: int, timeout_s: float) -> int | None:
    """TLS handshakes a pod's sidecar completed on its inbound `port` since it started; None when the pod has no
    sidecar or its inbound has no TLS stats (plaintext)."""
    found = cluster.get("v1", "Pod", pod, namespace) or {}
    if not any(c.get("name") == SIDECAR for c in found.get("spec", {}).get("containers") or []):
        return None
    return handshakes(listener_stats(cluster, namespace, pod, port, timeout_s), port)
