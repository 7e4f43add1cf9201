"""SPIRE's registration entries as its server holds them, readable through `kubectl exec` into `<release>-server-0`.

After each reconciliation the emulator writes the entries, as the server's entry API returns them (spire-api-sdk
spire/api/types/entry.proto in protojson field names), into `<state dir>/spire/<namespace>.json`, with whether the
server serves. Each Running server pod gets a kwok Exec (like the data plane's PortForwards) whose container
`spire-server` runs `spirecli.py` with that file, so `spire-server entry show` answers from it. An entry keeps its ID
(the controller manager's `<entryIDPrefix>.<uuid>`, pkg/spireentry/reconciler.go) and creation time while it exists;
the server sets revision 0 and `created_at` on creation (pkg/server/datastore/sqlstore).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from sandbox.emulator import spire, spirecli
from sandbox.emulator import store as st
from sandbox.emulator.kubeapi import Writer
from sandbox.processes import write_atomically

log = logging.getLogger("emulator.registration")
EXECS = st.Kind("execs", "kwok.x-k8s.io", "v1alpha1")
SERVER_CONTAINER = "spire-server"


def _id(spiffe_id: str) -> dict:
    trust_domain, slash, path = spiffe_id.removeprefix("spiffe://").partition("/")
    return {"trust_domain": trust_domain, "path": slash + path}


def entry_json(entry: spire.Entry, entry_id: str, created_at: int) -> dict:
    """One entry as the entry API returns it: every field present (EmitUnpopulated), int64 fields as strings."""
    return {"id": entry_id, "spiffe_id": _id(entry.spiffe_id), "parent_id": _id(entry.parent_id),
            "selectors": [{"type": kind, "value": value} for kind, _, value in
                          (s.partition(":") for s in entry.selectors)],
            "x509_svid_ttl": entry.x509_svid_ttl, "federates_with": list(entry.federates_with), "admin": entry.admin,
            "downstream": entry.downstream, "expires_at": "0", "dns_names": list(entry.dns_names),
            "revision_number": "0", "store_svid": False, "jwt_svid_ttl": entry.jwt_svid_ttl, "hint": entry.hint,
            "created_at": str(created_at)}


class Registrations:
    """Keeps each SPIRE server's entries file and the Exec objects of its pods."""

    def __init__(self, store: st.Store, writer: Writer, state_dir: Path) -> None:
        self._store, self._writer, self._dir = store, writer, state_dir / "spire"
        self._ids: dict[tuple, tuple[str, int]] = {}  # entry key -> (ID, created_at)
        self._written: dict[Path, str] = {}
        self._execs: set[str] = set()  # pod UIDs with an Exec
        self._lock = threading.Lock()

    def state_file(self, conf: spire.SpireConfig) -> Path:
        """Where the entries of the SPIRE of `conf` are kept."""
        return self._dir / f"{conf.namespace}.json"

    def publish(self, conf: spire.SpireConfig, entries: Iterable[spire.Entry], serving: bool) -> None:
        """Record the entries the server holds now and whether it answers (the file is rewritten on change)."""
        now = int(time.time())
        with self._lock:
            ids = {}
            for entry in entries:
                ids[entry.key] = self._ids.get(entry.key) or (
                    f"{conf.entry_id_prefix}.{uuid.uuid4()}" if conf.entry_id_prefix else str(uuid.uuid4()), now)
            self._ids = ids
            listed = [entry_json(e, *ids[e.key]) for e in entries]
            text = json.dumps({"serving": serving, "entries": listed}, sort_keys=True)
            path = self.state_file(conf)
            if self._written.get(path) == text:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, text)
            self._written[path] = text

    def on_pod(self, event: str, pod: Mapping) -> None:
        """Store listener: give each Running spire-server pod its Exec (kwok deletes neither; the pod's owner
        reference lets the garbage collector remove it with the pod)."""
        meta = pod["metadata"]
        uid = meta.get("uid", "")
        if event == "DELETED" or meta.get("deletionTimestamp"):
            with self._lock:
                self._execs.discard(uid)
            return
        if meta.get("labels", {}).get("app.kubernetes.io/name") != "server" or uid in self._execs or \
                (pod.get("status") or {}).get("phase") != "Running":
            return
        conf = spire.config(self._store)
        if conf is None or uid not in {p["metadata"]["uid"] for p in spire.server_pods(self._store, conf)}:
            return
        with self._lock:
            self._execs.add(uid)
        body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Exec",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                                  "uid": uid}]},
                "spec": {"execs": [{"containers": [SERVER_CONTAINER], "local": {"envs": [
                    {"name": spirecli.STATE_ENV, "value": str(self.state_file(conf))}]}}]}}
        self._writer.delete(EXECS, meta["namespace"], meta["name"])
        self._writer.create(EXECS, meta["namespace"], body)
        log.info("exec into %s/%s answers from %s", meta["namespace"], meta["name"], self.state_file(conf))
