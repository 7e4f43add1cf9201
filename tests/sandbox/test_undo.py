"""undo on the sandbox's real kube-apiserver: a CRD the run created is gone when undo returns, also when nobody ever
listed its instances (kube-apiserver 1.36 then builds their storage only when its CRD finalizer asks, and a finalizer
that met that storage still initializing can wait for the informer's resync, minutes, before it tries again)."""

from __future__ import annotations

import uuid

from meshid.kube import Cluster
from meshid.ledger import AppliedObject, Ledger
from meshid.stages.output import StageOutput
from meshid.undo import CRD_API, undo

UNDO_TIMEOUT_S = 40
KINDS = 8


def _crd(group: str, kind: str) -> dict:
    plural = f"{kind.lower()}s"
    return {"apiVersion": CRD_API, "kind": "CustomResourceDefinition", "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Cluster",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def _established(cluster: Cluster, name: str) -> None:
    cluster.wait(f"CRD {name} Established", CRD_API, "CustomResourceDefinition",
                 lambda objs: (any(c["type"] == "Established" and c["status"] == "True"
                                   for o in objs for c in (o.get("status") or {}).get("conditions") or []), "not yet"),
                 30, field_selector=f"metadata.name={name}")


def test_crds_whose_instances_nobody_listed_are_deleted_and_waited_for(kubeconfig, tmp_path):
    cluster, group = Cluster(kubeconfig), f"u{uuid.uuid4().hex[:6]}.meshid.test"
    crds = [_crd(group, f"Kind{i}") for i in range(KINDS)]
    ledger, out = Ledger(tmp_path / "ledger.json"), StageOutput()
    try:
        for crd in crds:
            cluster.apply(crd)
            ledger.record(AppliedObject(CRD_API, "CustomResourceDefinition", crd["metadata"]["name"], None, True))
        for crd in crds:
            _established(cluster, crd["metadata"]["name"])
        problems = undo(cluster, None, ledger, UNDO_TIMEOUT_S, out)
        assert problems == []
        left = [c["metadata"]["name"] for c in cluster.list(CRD_API, "CustomResourceDefinition")[0]
                if c["spec"]["group"] == group]
        assert left == [] and ledger.entries == []
        assert sorted(t.name for t in out.touched if t.action == "deleted") == sorted(c["metadata"]["name"]
                                                                                     for c in crds)
    finally:
        for crd in crds:
            cluster.delete(CRD_API, "CustomResourceDefinition", crd["metadata"]["name"])
        cluster.close()
