"""The control planes' work: what Kong Mesh and SPIRE write back into the cluster, mostly once per tick.

Kong Mesh creates the `default` Mesh when its control plane starts; while it is ready it rewrites MeshIdentity
conditions every tick (no status subresource) and generates a MeshService per Service of a mesh-enabled namespace
when the Mesh's meshServices mode is not Disabled, with `spec.identities`. SPIRE (while spire-server is ready)
reconciles ClusterSPIFFEIDs into entries and `status.stats`; agents hand SVIDs to pods. Then the data plane view is
rebuilt from what both know this tick. Between ticks, every `kuma.XDS_REFRESH_S`, the view takes the
MeshTrafficPermissions as they are then (`refresh`): proxies, identities and SVIDs change only on a tick.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping

from kubernetes.client.exceptions import ApiException

from sandbox.emulator import faults, kuma, spire, world
from sandbox.emulator import store as st
from sandbox.emulator.config import ConfigSource
from sandbox.emulator.kubeapi import Writer
from sandbox.emulator.registration import Registrations
from sandbox.emulator.templates import TemplateError

log = logging.getLogger("emulator.status")
NOT_EXCLUSIVE = ("MeshIdentity requires MeshServices to be enabled on the mesh. To enable, set "
                 "`spec.meshServices.mode: Exclusive` on the mesh.")


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def identity_conditions(mid: Mapping, mesh: Mapping) -> list[dict]:
    """MeshIdentity conditions as Kuma 2.12.3's IdentityProviderReconciler writes them."""
    provider = ((mid.get("spec") or {}).get("provider") or {}).get("type", "")
    if kuma.mesh_services_mode(mesh) != "Exclusive":
        steps = [_condition("DependenciesReady", False, "MeshServicesDisabled", NOT_EXCLUSIVE)]
    elif provider not in ("Bundled", "Spire"):
        steps = [_condition("Provider", False, "ProviderNotFoundError", f"provider: {provider} not found")]
    else:
        steps = [_condition("Provider", True, "ProviderInitialized", "Provider successfully initialized")]
    ok = all(c["status"] == "True" for c in steps)
    return [*steps, _condition("Ready", ok, "Ready" if ok else "Failure",
                               "Successfully initialized" if ok else "One of initialization steps failed")]


def _mesh_service(store: st.Store, svc: Mapping, mesh_name: str, mesh: Mapping,
                  ready_identities: frozenset[tuple[str, str]]) -> dict:
    """The MeshService Kuma's k8s controller and status updater keep for a Service."""
    meta, spec = svc["metadata"], svc.get("spec", {})
    selector = {**(spec.get("selector") or {}), "k8s.kuma.io/namespace": meta["namespace"]}
    labels = {**(meta.get("labels") or {}), "kuma.io/mesh": mesh_name, "k8s.kuma.io/service-name": meta["name"],
              "kuma.io/managed-by": "k8s-controller", "kuma.io/env": "kubernetes",
              "k8s.kuma.io/is-headless-service": "false", "kuma.io/origin": "zone", "kuma.io/zone": kuma.ZONE,
              "k8s.kuma.io/namespace": meta["namespace"], "kuma.io/display-name": meta["name"]}
    ports = [{"name": p.get("name") or str(p["port"]), "port": p["port"], "targetPort": p.get("targetPort", p["port"]),
              "appProtocol": p.get("appProtocol") or "tcp"}
             for p in spec.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
    pods = [p for p in store.list(st.PODS, meta["namespace"]) if kuma.injected(p)
            and not p["metadata"].get("deletionTimestamp")
            and all(kuma.dataplane_labels(p).get(k) == v for k, v in selector.items())]
    mids = store.list(st.MESH_IDENTITIES)
    tags: set[str] = set()
    spiffe_ids: set[str] = set()
    with_identity = 0
    for pod in pods:
        labels_of_dp = kuma.dataplane_labels(pod)
        tags |= kuma.service_tags([s for s in store.list(st.SERVICES, meta["namespace"]) if kuma.selects_pod(s, pod)])
        mid = kuma.matching_identity(mids, mesh_name, labels_of_dp)
        if mid is not None and st.key_of(mid) in ready_identities:
            try:
                spiffe_ids.add(kuma.rendered_spiffe_id(mid, mesh_name, labels_of_dp))
                with_identity += 1
            except TemplateError:
                continue
    mtls = kuma.mesh_mtls_enabled(mesh)
    identities = [{"type": "ServiceTag", "value": t} for t in sorted(tags) if mtls or not spiffe_ids]
    identities += [{"type": "SpiffeID", "value": i} for i in sorted(spiffe_ids)]
    healthy = sum(1 for p in pods if kuma.pod_ready(p))
    tls_ready = bool(pods) and (mtls or with_identity == len(pods))
    body_spec = {"selector": {"dataplaneTags": selector}, "ports": ports,
                 "state": "Available" if healthy else "Unavailable"}
    if identities:
        body_spec["identities"] = identities
    status = {"vips": [{"ip": spec.get("clusterIP", "")}],
              "dataplaneProxies": {"total": len(pods), "connected": healthy, "healthy": healthy},
              "tls": {"status": "Ready" if tls_ready else "NotReady"}}
    owner = {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta.get("uid", ""),
             "controller": True, "blockOwnerDeletion": True}
    return {"apiVersion": "kuma.io/v1alpha1", "kind": "MeshService",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels,
                         "ownerReferences": [owner]}, "spec": body_spec, "status": status}


def desired_mesh_services(store: st.Store, ready: frozenset[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """Every MeshService the control plane generates, by (namespace, name); `ready`: Ready MeshIdentities."""
    out = {}
    for svc in store.list(st.SERVICES):
        meta = svc["metadata"]
        namespace = store.get(st.NAMESPACES, "", meta["namespace"])
        ns_labels = (namespace or {}).get("metadata", {}).get("labels") or {}
        try:  # service_controller.go: an unreadable label fails the reconciliation, no MeshService
            in_mesh = bool(kuma.enabled(ns_labels, "kuma.io/sidecar-injection"))
        except ValueError:
            continue
        if not in_mesh and "kuma.io/mesh" not in (meta.get("labels") or {}):
            continue
        if (meta.get("annotations") or {}).get("kuma.io/ignore") == "true":
            continue
        mesh_name = kuma.mesh_of(namespace, meta.get("labels"))
        mesh = store.get(st.MESHES, "", mesh_name)
        if mesh is None or kuma.mesh_services_mode(mesh) == "Disabled":
            continue
        out[(meta["namespace"], meta["name"])] = _mesh_service(store, svc, mesh_name, mesh, ready)
    return out


class Reconciler:
    """Runs the periodic writers and keeps SPIRE's entries, the SVIDs handed out and the data plane view."""

    def __init__(self, store: st.Store, writer: Writer, config: ConfigSource, registrations: Registrations) -> None:
        self._store, self._writer, self._config, self._registrations = store, writer, config, registrations
        self.converger = world.Converger()
        self._entries: dict[str, list[spire.Entry]] = {}
        self._issued: dict[str, set[str]] = {}
        self._started: set[str] = set()  # control-plane pods that already ran their start-up
        self._view: world.View | None = None  # as of the last tick (None: the control plane was not ready)
        self._crash_loop = faults.PodFaults(writer, faults.crash_status, every_tick=True)
        self._spire_down = faults.PodFaults(writer, faults.not_ready_status, every_tick=False)

    def tick(self, now: float) -> None:
        """One round of every writer; API failures are logged and retried next tick."""
        conf = self._config.current
        cp = kuma.control_plane(self._store)
        spire_conf = spire.config(self._store)
        self._guarded("control plane fault", lambda: self._crash_loop.tick(
            kuma.control_plane_pods(self._store), conf.control_plane_crash_loop))
        if spire_conf is not None:
            self._guarded("spire-server fault", lambda: self._spire_down.tick(
                spire.server_pods(self._store, spire_conf), conf.spire_server_not_ready))
            self._guarded("SPIRE", lambda: self._spire(spire_conf))
        view = None
        if cp is not None and cp.ready and not conf.control_plane_crash_loop:
            ready = self._ready_identities()
            self._guarded("MeshIdentity status", self._write_identities)
            self._guarded("MeshServices", lambda: self._mesh_services(frozenset(ready)))
            view = world.build(self._store, cp.namespace, world.Identities(frozenset(ready), self._issued))
        self._view = view
        self.converger.offer(view, now, conf.convergence_delay_s)

    def refresh(self, now: float) -> None:
        """Between ticks: the last tick's view with the permissions as they are now, as Kong Mesh's xDS server
        regenerates each proxy's configuration (nothing new while the control plane is not ready)."""
        conf = self._config.current
        cp = kuma.control_plane(self._store)
        view = None
        if self._view is not None and cp is not None and cp.ready and not conf.control_plane_crash_loop:
            view = dataclasses.replace(self._view, permissions=world.permissions(self._store, cp.namespace))
        self.converger.offer(view, now, conf.convergence_delay_s)

    @staticmethod
    def _guarded(what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except ApiException as exc:
            log.warning("%s: API error %s %s", what, exc.status, exc.reason)
        except Exception:  # noqa: BLE001 - one failing writer must not stop the others
            log.exception("%s failed", what)

    def on_pod(self, event: str, pod: dict) -> None:
        """Store listener: a control plane that starts (its pod turns ready) creates the `default` Mesh if missing,
        as Kong Mesh does at start-up (KUMA_DEFAULTS_SKIP_MESH_CREATION=false)."""
        uid = pod["metadata"].get("uid", "")
        if event == "DELETED" or uid in self._started or not kuma.pod_ready(pod) or \
                pod["metadata"].get("labels", {}).get("app") != kuma.CONTROL_PLANE_APP:
            return
        self._started.add(uid)
        if self._store.get(st.MESHES, "", "default") is None:
            self._guarded("default Mesh", self._create_default_mesh)

    def _create_default_mesh(self) -> None:
        self._writer.create(st.MESHES, "", {"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh",
                                            "metadata": {"name": "default"}, "spec": {}})
        log.info("default Mesh created")

    def _conditions(self) -> dict[tuple[str, str], tuple[dict, list[dict]]]:
        """Each MeshIdentity whose Mesh exists, with the conditions the control plane computes for it now."""
        out = {}
        for mid in self._store.list(st.MESH_IDENTITIES):
            mesh = self._store.get(st.MESHES, "", mid["metadata"].get("labels", {}).get("kuma.io/mesh", "default"))
            if mesh is not None:
                out[st.key_of(mid)] = (mid, identity_conditions(mid, mesh))
        return out

    def _ready_identities(self) -> set[tuple[str, str]]:
        """MeshIdentities the control plane considers Ready this tick (what it hands identities out for)."""
        return {key for key, (_, conditions) in self._conditions().items() if conditions[-1]["status"] == "True"}

    def _write_identities(self) -> None:
        for mid, conditions in self._conditions().values():
            meta = mid["metadata"]
            if (mid.get("status") or {}).get("conditions") != conditions:
                self._writer.merge_patch(st.MESH_IDENTITIES, meta["namespace"], meta["name"],
                                         {"status": {"conditions": conditions}})
                log.info("MeshIdentity %s/%s: Ready=%s", meta["namespace"], meta["name"], conditions[-1]["status"])

    def _mesh_services(self, ready: frozenset[tuple[str, str]]) -> None:
        desired = desired_mesh_services(self._store, ready)
        for (ns, name), body in desired.items():
            current = self._store.get(st.MESH_SERVICES, ns, name)
            if current is None:
                self._writer.create(st.MESH_SERVICES, ns, body)
                log.info("MeshService %s/%s created", ns, name)
            elif current.get("spec") != body["spec"] or current.get("status") != body["status"] or \
                    any(current["metadata"].get("labels", {}).get(k) != v
                        for k, v in body["metadata"]["labels"].items()):
                patch = {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"],
                         "status": body["status"]}
                if "identities" not in body["spec"]:
                    patch["spec"] = {**body["spec"], "identities": None}
                self._writer.merge_patch(st.MESH_SERVICES, ns, name, patch)
        for current in self._store.list(st.MESH_SERVICES):
            meta = current["metadata"]
            if meta.get("labels", {}).get("kuma.io/managed-by") == "k8s-controller" and \
                    (meta["namespace"], meta["name"]) not in desired:
                self._writer.delete(st.MESH_SERVICES, meta["namespace"], meta["name"])
                log.info("MeshService %s/%s deleted", meta["namespace"], meta["name"])

    def _spire(self, conf: spire.SpireConfig) -> None:
        knobs = self._config.current
        servers = spire.server_pods(self._store, conf)
        serving = not knobs.spire_server_not_ready and any(kuma.pod_ready(p) for p in servers)
        if not serving:  # no reconciliation; agents keep the SVIDs they already hold
            self._registrations.publish(conf, [e for es in self._entries.values() for e in es], serving=False)
            return
        pods = self._store.list(st.PODS)
        csids = self._store.list(st.CLUSTER_SPIFFE_IDS)
        nodes = {n["metadata"]["name"]: n for n in self._store.list(st.NODES)}
        result = spire.reconcile(conf, csids, self._store.list(st.NAMESPACES), pods, nodes,
                                 self._store.list(st.SERVICES), knobs.registration_missing_namespaces)
        self._entries = result.entries
        self._registrations.publish(conf, [e for es in self._entries.values() for e in es], serving=True)
        for csid in csids:
            name = csid["metadata"]["name"]
            if name in result.stats and (csid.get("status") or {}).get("stats") != result.stats[name]:
                self._writer.merge_patch(st.CLUSTER_SPIFFE_IDS, "", name, {"status": {"stats": result.stats[name]}},
                                         status=True)
        agents = spire.agent_nodes(self._store, conf)
        self._issued = {p["metadata"]["uid"]: {spire.with_trust_domain(i, knobs.svid_trust_domain) for i in
                                               spire.svids(self._entries.get(p["metadata"]["uid"], []), p)}
                        for p in pods if p["spec"].get("nodeName") in agents}
