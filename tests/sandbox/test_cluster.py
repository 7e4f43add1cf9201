"""The sandbox is a real Kubernetes control plane: workloads, CRDs, port-forward, driven by the official client."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import uuid

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import portforward

from meshid import kube
from meshid.kube import ApiError, Cluster

WAIT_S = 60


@pytest.fixture
def namespace(api_client):
    """A fresh namespace, deleted after the test."""
    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _deployment(name: str, replicas: int = 2) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}},
    }


def _watch_until(list_fn, predicate, what: str, **kwargs):
    """Watch `list_fn` until `predicate(obj)` holds for an event's object; return it, or fail saying what was seen."""
    last = "nothing"
    stream = watch.Watch()
    for event in stream.stream(list_fn, timeout_seconds=WAIT_S, **kwargs):
        obj = event["object"]
        last = f"{event['type']} {obj.metadata.name}: {getattr(obj, 'status', None)}"
        if predicate(obj):
            stream.stop()
            return obj
    pytest.fail(f"waited {WAIT_S} s for {what}; last saw {last}")


def _available(dep) -> bool:
    conds = {c.type: c.status for c in (dep.status.conditions or [])}
    return (conds.get("Available") == "True" and dep.status.updated_replicas == dep.spec.replicas
            and dep.status.available_replicas == dep.spec.replicas
            and (dep.status.observed_generation or 0) >= dep.metadata.generation)


def test_deployment_becomes_available_and_rollout_restart_replaces_pods(api_client, namespace):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment("web"))
    _watch_until(apps.list_namespaced_deployment, _available, "deployment web Available", namespace=namespace)
    before = {p.metadata.uid for p in core.list_namespaced_pod(namespace, label_selector="app=web").items}
    assert len(before) == 2

    stamp = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}}}}
    apps.patch_namespaced_deployment("web", namespace, stamp)
    _watch_until(apps.list_namespaced_deployment, _available, "deployment web Available after restart",
                 namespace=namespace)

    def replaced() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        return len(live) == 2 and not ({p.metadata.uid for p in live} & before) and all(
            p.status.phase == "Running" for p in live)

    deadline = time.monotonic() + WAIT_S
    while not replaced() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert replaced(), "rollout restart did not replace both pods with new Running ones"


def test_daemonset_gets_one_pod_per_node_and_statefulset_gets_its_pods(api_client, namespace):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    nodes = [n.metadata.name for n in core.list_node().items]
    assert len(nodes) == 2
    labels = {"app": "agent"}
    pod_spec = {"containers": [{"name": "agent", "image": "registry.invalid/agent:1"}],
                "tolerations": [{"operator": "Exists"}]}
    apps.create_namespaced_daemon_set(namespace, {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}})
    ds = _watch_until(apps.list_namespaced_daemon_set,
                      lambda d: d.status.number_ready == len(nodes) and d.status.desired_number_scheduled == len(nodes),
                      "daemonset agent ready on every node", namespace=namespace)
    assert ds.status.number_ready == 2
    pods = core.list_namespaced_pod(namespace, label_selector="app=agent").items
    assert sorted(p.spec.node_name for p in pods) == sorted(nodes)

    db = {"app": "db"}
    apps.create_namespaced_stateful_set(namespace, {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 2, "selector": {"matchLabels": db},
                 "template": {"metadata": {"labels": db},
                              "spec": {"containers": [{"name": "db", "image": "registry.invalid/db:1"}]}}}})
    _watch_until(apps.list_namespaced_stateful_set, lambda s: s.status.ready_replicas == 2,
                 "statefulset db with 2 ready replicas", namespace=namespace)
    names = sorted(p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=db").items)
    assert names == ["db-0", "db-1"]


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.meshid.io"},
    "spec": {
        "group": "test.meshid.io", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
            "type": "object", "properties": {"spec": {
                "type": "object", "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 1},
                               "color": {"type": "string", "enum": ["red", "blue"]}}}}}}}],
    },
}


def test_crd_schema_is_enforced_and_server_side_apply_is_idempotent(api_client, kubeconfig, namespace):
    ext, custom = client.ApiextensionsV1Api(api_client), client.CustomObjectsApi(api_client)
    try:
        ext.create_custom_resource_definition(CRD)
    except ApiException as exc:
        if exc.status != 409:
            raise
    _watch_until(ext.list_custom_resource_definition,
                 lambda c: c.metadata.name == CRD["metadata"]["name"] and any(
                     x.type == "Established" and x.status == "True" for x in (c.status.conditions or [])),
                 "CRD widgets established")

    def widget(name: str, spec: dict) -> dict:
        return {"apiVersion": "test.meshid.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    cluster = Cluster(kubeconfig)

    def apply(body: dict) -> dict:
        body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        deadline = time.monotonic() + 20
        while True:  # a just-established CRD can take a moment to be served
            try:
                return cluster.apply(body, field_manager="meshid-test")
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    first = apply(widget("ok", {"size": 3, "color": "red"}))
    second = apply(widget("ok", {"size": 3, "color": "red"}))
    assert first["metadata"]["resourceVersion"] == second["metadata"]["resourceVersion"]

    with pytest.raises(ApiError) as bad:
        apply(widget("bad", {"size": 0, "color": "green"}))
    assert bad.value.status == 422
    assert "spec.size" in bad.value.detail and "spec.color" in bad.value.detail
    assert custom.get_namespaced_custom_object("test.meshid.io", "v1", namespace, "widgets", "ok")["spec"]["size"] == 3


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = f"hello via port-forward {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def web_pod(api_client, namespace):
    """A pod `web` whose port 5050 kwok forwards to a local HTTP server (a PortForward object)."""
    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1",
                                     "ports": [{"containerPort": 5050}]}]}})
        custom.create_namespaced_custom_object("kwok.x-k8s.io", "v1alpha1", namespace, "portforwards", {
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward", "metadata": {"name": "web"},
            "spec": {"forwards": [{"ports": [5050],
                                   "target": {"address": "127.0.0.1", "port": server.server_address[1]}}]}})
        _watch_until(core.list_namespaced_pod, lambda p: p.status.phase == "Running", "pod web Running",
                     namespace=namespace)
        yield "web"
    finally:
        server.shutdown()


def _get_probe(connect) -> bytes:
    """GET /probe over a fresh socket from `connect()`, retried while kwok has not picked up the PortForward yet."""
    answer = b""
    deadline = time.monotonic() + 30
    while b"200 OK" not in answer and time.monotonic() < deadline:
        sock, close = connect()
        sock.settimeout(10)
        answer = b""
        try:  # before kwok serves the PortForward the stream ends at once: the send or the read fails, try again
            sock.sendall(b"GET /probe HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
        close()
        if b"200 OK" not in answer:
            time.sleep(1)
    return answer


def test_port_forward_through_the_api_server_reaches_a_local_http_server(api_client, namespace, web_pod):
    core = client.CoreV1Api(api_client)

    def connect():
        pf = portforward(core.connect_get_namespaced_pod_portforward, web_pod, namespace, ports="5050")
        sock = pf.socket(5050)
        return sock, lambda: (sock.close(), pf.close())

    answer = _get_probe(connect)
    assert b"200 OK" in answer
    assert answer.endswith(b"hello via port-forward /probe")


def test_meshid_port_forward_relays_while_its_client_serves_other_requests(kubeconfig, namespace, web_pod):
    cluster = Cluster(kubeconfig)
    errors: list[str] = []
    stop = threading.Event()

    def busy() -> None:  # the same ApiClient, used from another thread while streams open
        while not stop.is_set():
            try:
                assert cluster.get("v1", "Pod", web_pod, namespace)["metadata"]["name"] == web_pod
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"{type(exc).__name__}: {exc}")

    readers = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        with cluster.port_forward(namespace, web_pod, 5050) as port:
            answers = [_get_probe(lambda: (s := socket.create_connection(("127.0.0.1", port)), s.close))
                       for _ in range(5)]
    finally:
        stop.set()
        for reader in readers:
            reader.join(10)
    assert all(a.endswith(b"hello via port-forward /probe") for a in answers), answers
    assert errors == []


def test_a_wait_watches_on_across_its_slices_and_lists_only_once(kubeconfig, namespace, monkeypatch):
    cluster = Cluster(kubeconfig)
    lists = []
    listing = cluster.list
    monkeypatch.setattr(cluster, "list", lambda *args: lists.append(args) or listing(*args))

    def create_later() -> None:
        time.sleep(2.5 * kube.WATCH_SLICE_S)  # a few slices of nothing to see
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late", "namespace": namespace},
                       "data": {"k": "v"}})

    creator = threading.Thread(target=create_later)
    creator.start()
    try:
        found = cluster.wait("the late ConfigMap", "v1", "ConfigMap", lambda objs: (
            any(o["metadata"]["name"] == "late" for o in objs), f"{len(objs)} ConfigMaps"), WAIT_S, namespace=namespace)
    finally:
        creator.join()
        cluster.close()
    assert "late" in [o["metadata"]["name"] for o in found]
    assert len(lists) == 1, "every slice after the first watches on from the last resourceVersion"
