"""Kubernetes API access for one cluster: its own client (never the global config), objects as plain dicts.

Every request carries its own timeout and raises `ApiError` (an `ExternalCallError`, transient or not) on failure:
the client's and urllib3's exceptions are mapped to it here (`api_error`) and nowhere else.
Waits list, then watch from the listed resourceVersion, survive transient errors and expired watches, and on
timeout raise `WaitTimeout` naming what they waited for and what they saw last. A wait watches WATCH_SLICE_S at a
time and checks for a stop request (`meshid.interrupt`) in between; the next slice watches on from the last
resourceVersion seen (bookmarks keep it fresh), and only an expired one or an error lists again.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3.exceptions
from kubernetes import config
from kubernetes.client.rest import ApiException

from meshid import interrupt
from meshid.errors import TRANSIENT_STATUSES, ApiError, InputError, WaitTimeout, caused_by
from meshid.kubeconfig import load_kubeconfig
from meshid.redact import redact

if TYPE_CHECKING:
    from meshid.podexec import ExecResult

Obj = dict[str, Any]
Condition = Callable[[list[Obj]], tuple[bool, str]]
WATCH_SLICE_S = 2.0  # one watch request of a wait; a stop request is seen within this


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API."""

    group_version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection or of one object."""
        base = f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class Cluster:
    """One cluster's API, built from a kubeconfig path and context."""

    def __init__(self, kubeconfig: Path, context: str | None = None, timeout_s: float = 30.0) -> None:
        load_kubeconfig(kubeconfig, context)
        self.kubeconfig, self.context, self.timeout_s = Path(kubeconfig), context, timeout_s
        try:
            self.api = config.new_client_from_config(config_file=str(kubeconfig), context=context,
                                                     persist_config=False)
        except config.ConfigException as exc:  # e.g. a client certificate file that is not there
            raise caused_by(InputError("target.kubeconfig", f"{kubeconfig} cannot be used: {redact(str(exc))}",
                                       "give a kubeconfig whose context's cluster and user are complete, and "
                                       "the files they name readable"), exc) from exc
        self._resources: dict[tuple[str, str], Resource] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the connection pool."""
        self.api.close()

    # --- raw requests -------------------------------------------------------------------------------------

    def request(self, method: str, path: str, what: str, *, query: list[tuple[str, str]] | None = None,
                body: Any = None, content_type: str = "application/json", timeout_s: float | None = None,
                stream: bool = False) -> Any:
        """One API request with its own timeout; returns decoded JSON, or the open urllib3 response to stream."""
        timeout = timeout_s or self.timeout_s
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            method, url, headers, body, _ = self.api.param_serialize(
                method, path, query_params=query or [], header_params=headers, body=body,
                auth_settings=["BearerToken"])
            resp = self.api.call_api(method, url, headers, body, _request_timeout=(min(10.0, timeout), timeout))
            if not 200 <= resp.status < 300:
                text = resp.read().decode(errors="replace")
                raise ApiError(what, _api_message(resp.status, text), resp.status in TRANSIENT_STATUSES, resp.status)
            if stream:
                return resp.response
            raw = resp.read()  # the body streams in after the headers: a dropped connection shows here
        except ApiError:
            raise
        except Exception as exc:
            raise api_error(what, exc) from exc
        return json.loads(raw) if raw else {}

    def version(self) -> str:
        """The server's gitVersion, e.g. v1.36.3."""
        return self.request("GET", "/version", "read server version")["gitVersion"]

    def resource(self, api_version: str, kind: str) -> Resource:
        """Map apiVersion + kind to its REST resource (discovery per group-version, refreshed on a miss)."""
        key = (api_version, kind)
        with self._lock:
            if key not in self._resources:
                path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
                try:
                    found = self.request("GET", path, f"discover {api_version}")
                except ApiError as exc:
                    if exc.status == 404:
                        raise ApiError(f"discover {kind}", f"the server has no API {api_version}", False, 404) from None
                    raise
                for res in found.get("resources", []):
                    if "/" not in res["name"]:
                        self._resources[(api_version, res["kind"])] = Resource(api_version, res["name"],
                                                                                res["namespaced"])
            if key not in self._resources:
                raise ApiError(f"discover {kind}", f"the server has no kind {kind} in {api_version}", False, 404)
            return self._resources[key]

    # --- objects -------------------------------------------------------------------------------------------

    def apply(self, obj: Obj, *, dry_run: bool = False, field_manager: str = "meshid") -> Obj:
        """Server-side apply (force) of one object; with `dry_run` the server validates without persisting."""
        meta = obj["metadata"]
        res = self.resource(obj["apiVersion"], obj["kind"])
        query = [("fieldManager", field_manager), ("force", "true")] + ([("dryRun", "All")] if dry_run else [])
        return self.request("PATCH", res.path(meta.get("namespace"), meta["name"]), _describe(obj, "apply"),
                            query=query, body=obj, content_type="application/apply-patch+yaml")

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        res = self.resource(api_version, kind)
        try:
            return self.request("GET", res.path(namespace, name), f"get {kind} {_qualified(namespace, name)}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = "",
             field_selector: str = "") -> tuple[list[Obj], str]:
        """Objects of a kind and the list's resourceVersion."""
        res = self.resource(api_version, kind)
        query = [(k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v]
        found = self.request("GET", res.path(namespace), f"list {kind}" + (f" in {namespace}" if namespace else ""),
                             query=query)
        return found.get("items", []), found.get("metadata", {}).get("resourceVersion", "")

    def patch(self, api_version: str, kind: str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        """A JSON merge patch of one object."""
        res = self.resource(api_version, kind)
        return self.request("PATCH", res.path(namespace, name), f"patch {kind} {_qualified(namespace, name)}",
                            body=patch, content_type="application/merge-patch+json")

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete one object (foreground propagation); False when it was already gone."""
        res = self.resource(api_version, kind)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
        try:
            self.request("DELETE", res.path(namespace, name), f"delete {kind} {_qualified(namespace, name)}",
                         body=body)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # --- waits ---------------------------------------------------------------------------------------------

    def wait(self, what: str, api_version: str, kind: str, condition: Condition, timeout_s: float, *,
             namespace: str | None = None, label_selector: str = "", field_selector: str = "") -> list[Obj]:
        """Watch a set of objects until `condition(objects)` is met; return them.

        `condition` returns (done, observation); the last observation is reported if the wait times out.
        Transient API errors and expired watches restart the list+watch instead of failing the wait.
        """
        deadline = time.monotonic() + timeout_s
        last = "nothing yet"
        objects: dict[tuple[str, str], Obj] | None = None  # None: list (again)
        rv = ""
        while True:
            interrupt.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(what, last, timeout_s)
            try:
                if objects is None:
                    items, rv = self.list(api_version, kind, namespace, label_selector, field_selector)
                    objects = {_key(o): o for o in items}
                    done, last = condition(list(objects.values()))
                    if done:
                        return list(objects.values())
                for event in self._watch(api_version, kind, namespace, label_selector, field_selector, rv,
                                         min(remaining, WATCH_SLICE_S)):
                    if event["type"] == "ERROR":
                        objects = None  # e.g. 410 Gone: the resourceVersion expired; list again
                        break
                    obj = event["object"]
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv  # the next slice goes on from here
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "DELETED":
                        objects.pop(_key(obj), None)
                    else:
                        objects[_key(obj)] = obj
                    done, last = condition(list(objects.values()))
                    if done:
                        return list(objects.values())
            except ApiError as exc:
                objects = None
                if exc.status == 410:  # Gone: the resourceVersion expired before the watch began; list again
                    continue
                if not exc.transient:
                    raise
                last = f"{last} (then a transient error: {exc})"
                interrupt.wait(min(1.0, max(0.0, deadline - time.monotonic())))

    def _watch(self, api_version: str, kind: str, namespace: str | None, label_selector: str,
               field_selector: str, rv: str, remaining: float) -> Iterator[Obj]:
        res = self.resource(api_version, kind)
        query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("resourceVersion", rv),
                 ("timeoutSeconds", str(max(1, int(remaining))))]
        query += [(k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v]
        resp = self.request("GET", res.path(namespace), f"watch {kind}", query=query, stream=True,
                            timeout_s=remaining + 5)
        buf, ended = b"", False
        try:
            for chunk in resp.stream(4096, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            ended = True
        except Exception as exc:  # a dropped watch connection: the caller lists again
            raise caused_by(ApiError(f"watch {kind}", f"{type(exc).__name__}: {exc}", True), exc) from exc
        finally:
            if not ended:  # the caller stopped early: the stream still runs on this connection, so it cannot be reused
                resp.close()
            resp.release_conn()

    # --- workloads -----------------------------------------------------------------------------------------

    def rollout_restart(self, namespace: str, deployment: str) -> Obj:
        """What `kubectl rollout restart` does: stamp the pod template so every pod is replaced."""
        stamp = datetime.now(UTC).isoformat()  # sub-second: two restarts in one second still differ
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        return self.patch("apps/v1", "Deployment", deployment, patch, namespace)

    def wait_rollout(self, namespace: str, deployment: str, timeout_s: float) -> Obj:
        """Wait until a Deployment's latest generation is fully rolled out and available (old pods gone)."""

        def rolled_out(items: list[Obj]) -> tuple[bool, str]:
            dep = next((d for d in items if d["metadata"]["name"] == deployment), None)
            if dep is None:
                return False, f"deployment {deployment} not found"
            return deployment_rolled_out(dep)

        return self.wait(f"rollout of deployment {namespace}/{deployment}", "apps/v1", "Deployment", rolled_out,
                         timeout_s, namespace=namespace, field_selector=f"metadata.name={deployment}")[0]

    def pod_logs(self, namespace: str, pod: str, container: str | None = None, tail_lines: int = 200) -> str:
        """The tail of a pod's (container's) log."""
        query = [("tailLines", str(tail_lines))] + ([("container", container)] if container else [])
        what = f"logs of pod {namespace}/{pod}"
        resp = self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", what, query=query, stream=True)
        try:
            return resp.read().decode(errors="replace")
        except Exception as exc:
            raise api_error(what, exc) from exc
        finally:
            resp.release_conn()

    def exec(self, namespace: str, pod: str, container: str, command: list[str],
             timeout_s: float | None = None) -> ExecResult:
        """Run `command` in a pod's container (what `kubectl exec` does) within one timeout; a command that ran and
        exited non-zero is a result, not an error."""
        from meshid.podexec import run

        what = f"exec {command[0]} in pod {namespace}/{pod} (container {container})"
        return run(self.api, namespace, pod, container, command, timeout_s or self.timeout_s, what)

    @contextmanager
    def port_forward(self, namespace: str, pod: str, port: int) -> Iterator[int]:
        """Forward a local 127.0.0.1 port to `port` of a pod through the API server; yields the local port."""
        from meshid.portforward import Forwarder

        forwarder = Forwarder(self.api, namespace, pod, port)
        try:
            yield forwarder.start()
        finally:
            forwarder.stop()


def api_error(what: str, exc: Exception) -> ApiError:
    """The kubernetes client's or urllib3's exception as an `ApiError`, the exception its `__cause__`: transient for
    a 429/5xx answer and for a connection that failed, broke off or timed out; not for the rest (a TLS or proxy
    failure, a request the client could not build)."""
    if isinstance(exc, ApiException):  # status 0: the client's TLS failure or a request it could not build
        status = exc.status or None
        return caused_by(ApiError(what, _api_message(exc.status, exc.body or exc.reason), status in TRANSIENT_STATUSES,
                                  status), exc)
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
    transient = isinstance(cause, (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError, ConnectionError,
                                   TimeoutError))  # urllib3's TimeoutError covers NewConnectionError too
    return caused_by(ApiError(what, f"{type(exc).__name__}: {exc}", transient), exc)


def deployment_rolled_out(dep: Obj) -> tuple[bool, str]:
    """Whether a Deployment is fully rolled out (what `kubectl rollout status` waits for), and what it shows."""
    spec, status, meta = dep.get("spec", {}), dep.get("status", {}), dep["metadata"]
    want = spec.get("replicas", 1)
    seen = (f"generation {meta.get('generation')} observed {status.get('observedGeneration')}, "
            f"{status.get('updatedReplicas', 0)}/{want} updated, {status.get('availableReplicas', 0)}/{want} "
            f"available, {status.get('replicas', 0)} total")
    done = (status.get("observedGeneration", 0) >= meta.get("generation", 0)
            and status.get("updatedReplicas", 0) == want and status.get("availableReplicas", 0) == want
            and status.get("replicas", 0) == want)
    return done, seen


def _key(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _qualified(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _describe(obj: Obj, verb: str) -> str:
    return f"{verb} {obj['kind']} {_qualified(obj['metadata'].get('namespace'), obj['metadata']['name'])}"


def _api_message(status: int | None, text: str | None) -> str:
    """`HTTP <status>: <the Status object's message>`, or the raw text when it is not a Status."""
    try:
        return f"HTTP {status}: {json.loads(text or '')['message']}"
    except (TypeError, ValueError, KeyError):
        return f"HTTP {status}: {(text or '').strip()[:500]}"
