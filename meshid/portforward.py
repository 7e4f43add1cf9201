"""A local 127.0.0.1 listener relaying each connection to a pod port through the API server (like kubectl).

Each stream is opened from the cluster's ApiClient (its address, TLS and credentials) with the kubernetes package's
websocket port-forward call. Not through `CoreV1Api.connect_get_namespaced_pod_portforward` and
`kubernetes.stream.portforward`: that wrapper swaps the shared ApiClient's `call_api` while it connects, so any other
request on the same client in that moment would go out as a websocket; and importing CoreV1Api loads
thousands of generated methods for one call.
"""

from __future__ import annotations

import logging
import select
import socket
import threading

from kubernetes.client import ApiClient
from kubernetes.stream.ws_client import PortForward, portforward_call

from meshid.redact import redact

_log = logging.getLogger(__name__)
RELAY_IDLE_S = 60.0


class Forwarder:
    """Accepts local connections and relays each over its own port-forward stream to `pod:port`."""

    def __init__(self, api: ApiClient, namespace: str, pod: str, port: int) -> None:
        self.api, self.namespace, self.pod, self.port = api, namespace, pod, port
        self._listener = socket.socket()
        self._stopped = threading.Event()

    def start(self) -> int:
        """Bind 127.0.0.1 on a free port, start relaying, and return the port."""
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, name=f"pf-{self.pod}", daemon=True).start()
        return self._listener.getsockname()[1]

    def stop(self) -> None:
        """Stop accepting; live relays end when either side closes or idles out."""
        self._stopped.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                local, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._relay, args=(local,), daemon=True).start()

    def _open(self) -> PortForward:
        """A new port-forward stream to the pod (the API server's pods/portforward subresource)."""
        method, url, headers, _, _ = self.api.param_serialize(
            "GET", "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            path_params={"namespace": self.namespace, "name": self.pod}, query_params=[("ports", str(self.port))],
            header_params={}, auth_settings=["BearerToken"])
        return portforward_call(self.api.configuration, method, url, headers=headers)

    def _relay(self, local: socket.socket) -> None:
        try:
            stream = self._open()
        except Exception as exc:  # the API refused the stream: close the local side so the client sees it
            _log.debug("port-forward to %s/%s:%d refused: %s", self.namespace, self.pod, self.port,
                       redact(f"{type(exc).__name__}: {exc}"))
            local.close()
            return
        remote = stream.socket(self.port)
        try:
            _pump(local, remote)
        finally:
            for end in (local, remote):
                end.close()
            stream.close()


def _pump(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], RELAY_IDLE_S)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            peers[sock].sendall(data)
