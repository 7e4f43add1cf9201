"""The data plane's view of the mesh: every proxy's certificate as of a tick, and every MeshTrafficPermission.

A proxy gets its MeshIdentity only when the identity selecting it is Ready, its pod carries the SPIRE socket volume
(else the control plane logs "dataplane doesn't have spire socket mounted, please redeploy your Pod" and the proxy
keeps the mesh CA certificate) and SPIRE issued an SVID equal, byte for byte, to the SPIFFE ID Kuma renders (else
the proxy has no certificate at all). `Converger` publishes views late by `convergence_delay_s`.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox.emulator import kuma
from sandbox.emulator import store as st
from sandbox.emulator.policy import Mode, Permission, Proxy
from sandbox.emulator.templates import TemplateError


@dataclass(frozen=True)
class Identities:
    """What the control planes know this tick: Ready MeshIdentities (namespace, name) and SVIDs by pod UID."""

    ready: frozenset[tuple[str, str]] = frozenset()
    issued: Mapping[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """Proxies by pod UID, and the permissions in force."""

    proxies: Mapping[str, Proxy] = field(default_factory=dict)
    permissions: tuple[Permission, ...] = ()

    def proxy_of(self, pod: Mapping) -> Proxy:
        """The pod's proxy; a pod not yet in the view has no config: plaintext if not injected, else pending."""
        uid = pod["metadata"].get("uid", "")
        if uid in self.proxies:
            return self.proxies[uid]
        mode = Mode.PENDING if kuma.injected(pod) else Mode.PLAINTEXT
        return Proxy(name=pod["metadata"]["name"], namespace=pod["metadata"]["namespace"], mode=mode)


def _identity_id(store: st.Store, pod: Mapping, mesh: str, labels: Mapping[str, str], known: Identities) -> \
        tuple[Mode, str] | None:
    """(mode, SPIFFE ID) when a Ready MeshIdentity applies to the pod; None when the proxy keeps legacy mTLS."""
    mid = kuma.matching_identity(store.list(st.MESH_IDENTITIES), mesh, labels)
    if mid is None or st.key_of(mid) not in known.ready:
        return None
    provider = ((mid.get("spec") or {}).get("provider") or {}).get("type")
    if provider == "Spire" and not kuma.has_spire_socket(pod):
        return None
    try:
        rendered = kuma.rendered_spiffe_id(mid, mesh, labels)
    except TemplateError:
        return Mode.PENDING, ""
    if provider == "Bundled" or rendered in known.issued.get(pod["metadata"].get("uid", ""), set()):
        return Mode.IDENTITY, rendered
    return Mode.PENDING, rendered


def proxy(store: st.Store, pod: Mapping, known: Identities) -> Proxy:
    """The proxy of one pod as the control plane configures it now."""
    meta = pod["metadata"]
    base = {"name": meta["name"], "namespace": meta["namespace"]}
    if not kuma.injected(pod):
        return Proxy(mode=Mode.PLAINTEXT, **base)
    mesh_name = meta.get("labels", {}).get("kuma.io/mesh", "default")
    mesh = store.get(st.MESHES, "", mesh_name)
    labels = kuma.dataplane_labels(pod)
    services = [s for s in store.list(st.SERVICES, meta["namespace"]) if kuma.selects_pod(s, pod)]
    tags = {k: frozenset({v}) for k, v in labels.items()}
    tags["kuma.io/service"] = frozenset(kuma.service_tags(services))
    common = {**base, "labels": labels, "tags": tags, "mesh": mesh_name,
              "services": frozenset(s["metadata"]["name"] for s in services)}
    if mesh is None:
        return Proxy(mode=Mode.PENDING, **common)
    identity = _identity_id(store, pod, mesh_name, labels, known)
    if identity is not None:
        mode, spiffe_id = identity
        return Proxy(mode=mode, spiffe_ids=(spiffe_id,) if mode is Mode.IDENTITY else (), **common)
    if kuma.mesh_mtls_enabled(mesh):
        ids = tuple(sorted(f"spiffe://{mesh_name}/{tag}" for tag in tags["kuma.io/service"]))
        return Proxy(mode=Mode.LEGACY, spiffe_ids=ids, **common)
    return Proxy(mode=Mode.PLAINTEXT, **common)


def build(store: st.Store, system_namespace: str, known: Identities) -> View:
    """The view of every running pod and every MeshTrafficPermission."""
    proxies = {p["metadata"]["uid"]: proxy(store, p, known) for p in store.list(st.PODS)
               if not p["metadata"].get("deletionTimestamp") and p["spec"].get("nodeName")}
    return View(proxies=proxies, permissions=permissions(store, system_namespace))


def permissions(store: st.Store, system_namespace: str) -> tuple[Permission, ...]:
    """Every MeshTrafficPermission, as the proxies enforce it."""
    return tuple(Permission.parse(m, system_namespace) for m in store.list(st.MESH_TRAFFIC_PERMISSIONS))


class Converger:
    """Publishes offered views once they are `delay_s` old (0: at once), in order."""

    def __init__(self) -> None:
        self._queue: collections.deque[tuple[float, View]] = collections.deque()
        self.published = View()

    def offer(self, view: View | None, now: float, delay_s: float) -> None:
        """Queue `view` (None: nothing new) if it differs from the last one, then publish what is old enough."""
        last = self._queue[-1][1] if self._queue else self.published
        if view is not None and view != last:
            self._queue.append((now, view))
        while self._queue and self._queue[0][0] <= now - delay_s:
            self.published = self._queue.popleft()[1]
