"""A sidecar's Envoy admin API (port 9901), read through a port-forward: the stats that prove traffic was mTLS, and the
certificate (`/certs`) that proves which identity the proxy serves.

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
    return parse_stats(_json(answer, f"Envoy admin /stats of pod {namespace}/{pod}"))


def certificate_ids(data: object) -> list[str]:
    """The URI SANs of the certificates in Envoy's `/certs` answer (`{"certificates": [{"cert_chain": [{
    "subject_alt_names": [{"uri": ...}]}]}]}`): the SPIFFE IDs the proxy serves."""
    certs = data.get("certificates", []) if isinstance(data, dict) else []
    return sorted({san["uri"] for c in certs if isinstance(c, dict) for link in c.get("cert_chain") or []
                   for san in link.get("subject_alt_names") or [] if isinstance(san, dict) and "uri" in san})


def served_ids(cluster: Cluster, namespace: str, pod: str, timeout_s: float) -> list[str] | None:
    """The SPIFFE IDs of the certificates a pod's sidecar serves now (None when the pod has no sidecar)."""
    if not _injected(cluster, namespace, pod):
        return None
    with forwarded(cluster, namespace, pod, ADMIN_PORT, timeout_s) as admin:
        answer = admin.call("GET", "/certs")
    return certificate_ids(_json(answer, f"Envoy admin /certs of pod {namespace}/{pod}"))


def _injected(cluster: Cluster, namespace: str, pod: str) -> bool:
    found = cluster.get("v1", "Pod", pod, namespace) or {}
    return any(c.get("name") == SIDECAR for c in found.get("spec", {}).get("containers") or [])


def _json(answer, what: str) -> object:  # noqa: ANN001 - an HttpExchange
    if answer.status != 200:
        detail = answer.error or f"HTTP {answer.status}: {answer.body[:200]}"
        raise ExternalCallError(what, detail, transient=answer.status is None or answer.status >= 500)
    try:
        return json.loads(answer.body)
    except ValueError:
        raise ExternalCallError(what, f"not JSON: {answer.body[:200]!r}") from None


def inbound_handshakes(cluster: Cluster, namespace: str, pod: str, port: int, timeout_s: float) -> int | None:
    """TLS handshakes a pod's sidecar completed on its inbound `port` since it started; None when the pod has no
    sidecar or its inbound has no TLS stats (plaintext)."""
    if not _injected(cluster, namespace, pod):
        return None
    return handshakes(listener_stats(cluster, namespace, pod, port, timeout_s), port)
