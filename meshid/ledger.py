"""What one run applied to a cluster, in order, so cleanup and rollback undo exactly that, in reverse; and the run's
record (`meshid.runrecord`): who wrote it, where its cluster is, and whether its cleanup is done.

Saved as JSON in the run directory before every change, so a run that died can still be cleaned up from its file
(`meshid recover`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from meshid.runrecord import RunRecord

FILE = "ledger.json"


@dataclass(frozen=True)
class AppliedObject:
    """An object the run applied; `created` is False when it existed before the run (then it is left alone)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    created: bool

    def same(self, other: Entry) -> bool:
        """Whether `other` records the same object."""
        return isinstance(other, AppliedObject) and (self.api_version, self.kind, self.name, self.namespace) == (
            other.api_version, other.kind, other.name, other.namespace)


@dataclass(frozen=True)
class AppliedRelease:
    """A helm release the run installed (`previous_revision` None) or upgraded (from `previous_revision`).

    An install also records what the release leaves behind on `helm uninstall` that did not exist before it, so undo
    removes that too: CRDs (of `crd_group`; helm never deletes a chart's `crds/`, and spire-crds marks its CRDs
    `helm.sh/resource-policy: keep`) beyond those in `crds_before`, and `claims`, the PersistentVolumeClaims its
    StatefulSets create from their volumeClaimTemplates (the claims outlive the StatefulSet).
    """

    name: str
    namespace: str
    previous_revision: int | None
    crd_group: str | None = None
    crds_before: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()

    def same(self, other: Entry) -> bool:
        """Whether `other` records the same release."""
        return isinstance(other, AppliedRelease) and (self.name, self.namespace) == (other.name, other.namespace)


@dataclass(frozen=True)
class CreatedCluster:
    """A throwaway cluster (sandbox, kind, minikube) the run is creating: undone by deleting it, and with it all
    the rest."""

    provider: str
    name: str

    def same(self, other: Entry) -> bool:
        """Whether `other` records the same cluster."""
        return other == self


Entry = AppliedObject | AppliedRelease | CreatedCluster
_TYPES = {t.__name__: t for t in (AppliedObject, AppliedRelease, CreatedCluster)}


@dataclass
class Ledger:
    """The run's changes in the order they were made; the first record of a thing wins (it knows the before)."""

    path: Path | None = None
    entries: list[Entry] = field(default_factory=list)
    run: RunRecord | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, entry: Entry) -> None:
        """Remember a change before it is made."""
        with self._lock:
            if not any(entry.same(e) for e in self.entries):
                self.entries.append(entry)
            self._save()

    def recorded(self, entry: Entry) -> Entry | None:
        """The run's record of the same thing as `entry`, if it made one."""
        with self._lock:
            return next((e for e in self.entries if entry.same(e)), None)

    def forget(self, entry: Entry) -> None:
        """Drop a change once it has been undone."""
        with self._lock:
            self.entries = [e for e in self.entries if not entry.same(e)]
            self._save()

    def forget_namespace(self, namespace: str) -> None:
        """Drop the records of a namespace and of everything in it: it was deleted with all it held."""
        with self._lock:
            self.entries = [e for e in self.entries if not isinstance(e, AppliedObject)
                            or (e.namespace != namespace and not (e.kind == "Namespace" and e.name == namespace))]
            self._save()

    def clear(self) -> None:
        """Drop every change: the cluster that held them is gone."""
        with self._lock:
            self.entries = []
            self._save()

    def created_cluster(self) -> CreatedCluster | None:
        """The throwaway cluster the run created, if it did."""
        with self._lock:
            return next((e for e in self.entries if isinstance(e, CreatedCluster)), None)

    def set_run(self, run: RunRecord) -> None:
        """Replace the run's record (its start, then its end)."""
        with self._lock:
            self.run = run
            self._save()

    def update_run(self, **changes: object) -> None:
        """Change fields of the run's record (there must be one)."""
        with self._lock:
            assert self.run is not None, "the ledger has no run record"
            self.run = self.run.model_copy(update=changes)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"run": self.run.model_dump(mode="json") if self.run else None,
                "entries": [{"type": type(e).__name__, **asdict(e)} for e in self.entries]}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> Ledger:
        """A ledger from its file (empty when the file does not exist)."""
        if not path.is_file():
            return cls(path=path)
        data = json.loads(path.read_text())
        run = RunRecord.model_validate(data["run"]) if data.get("run") else None
        entries = [_TYPES[e.pop("type")](**{k: tuple(v) if isinstance(v, list) else v for k, v in e.items()})
                   for e in data["entries"]]
        return cls(path=path, run=run, entries=entries)
