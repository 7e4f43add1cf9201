"""What SPIRE does for the mesh: the controller manager's ClusterSPIFFEID reconciliation and the agent's SVIDs.

Modelled on spire-controller-manager: only ClusterSPIFFEIDs of its class (or classless ones with watchClassless)
are reconciled; fallback ones apply only to pods no other one covers; entries with the same SPIFFE ID, parent and
selectors mask each other (oldest wins); a SPIFFE ID outside SPIRE's trust domain is a render failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from sandbox.emulator import store as st
from sandbox.emulator.kuma import pod_ready, service_account
from sandbox.emulator.spiffe import is_valid_id, trust_domain_of
from sandbox.emulator.templates import TemplateError, render

CONFIG_MAP = "spire-controller-manager"
CONFIG_KEY = "controller-manager-config.yaml"
STAT_NAMES = ("namespacesSelected", "namespacesIgnored", "podsSelected", "podEntryRenderFailures", "entriesMasked",
              "entriesToSet", "entryFailures")


@dataclass(frozen=True)
class SpireConfig:
    """The controller manager's config as the spire chart rendered it."""

    namespace: str
    trust_domain: str
    class_name: str
    watch_classless: bool
    ignore_namespaces: tuple[str, ...]
    cluster_name: str


@dataclass(frozen=True)
class Entry:
    """A registration entry SPIRE holds for a pod."""

    csid: str
    pod_uid: str
    spiffe_id: str
    parent_id: str
    selectors: tuple[str, ...]


@dataclass
class Reconciled:
    """One reconciliation: stats per reconciled ClusterSPIFFEID and the entries to set, by pod UID."""

    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    entries: dict[str, list[Entry]] = field(default_factory=dict)


def config(store: st.Store) -> SpireConfig | None:
    """The controller manager config from the spire chart's ConfigMap, or None when SPIRE is not installed."""
    for cm in store.list(st.CONFIGMAPS):
        if cm["metadata"]["name"] == CONFIG_MAP and CONFIG_KEY in (cm.get("data") or {}):
            raw = yaml.safe_load(cm["data"][CONFIG_KEY]) or {}
            return SpireConfig(namespace=cm["metadata"]["namespace"], trust_domain=str(raw.get("trustDomain", "")),
                               class_name=str(raw.get("className", "")),
                               watch_classless=bool(raw.get("watchClassless", False)),
                               ignore_namespaces=tuple(raw.get("ignoreNamespaces") or ()),
                               cluster_name=str(raw.get("clusterName", "")))
    return None


def server_pods(store: st.Store, conf: SpireConfig) -> list[dict]:
    """The spire-server StatefulSet's pods."""
    return [p for p in store.list(st.PODS, conf.namespace)
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "server"]


def agent_nodes(store: st.Store, conf: SpireConfig) -> set[str]:
    """Nodes with a ready spire-agent pod."""
    return {p["spec"].get("nodeName", "") for p in store.list(st.PODS, conf.namespace)
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "agent" and pod_ready(p)}


def handles(conf: SpireConfig, csid: Mapping) -> bool:
    """True when this controller reconciles the ClusterSPIFFEID (its className, or classless + watchClassless)."""
    class_name = (csid.get("spec") or {}).get("className") or ""
    return class_name == conf.class_name or (not class_name and conf.watch_classless)


def selector_matches(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector; a missing selector selects everything (as the controller lists)."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _ignored(conf: SpireConfig, namespace: str) -> bool:
    return any(re.fullmatch(pattern, namespace) for pattern in conf.ignore_namespaces)


def _template_data(conf: SpireConfig, pod: Mapping) -> dict:
    meta = pod["metadata"]
    return {"TrustDomain": conf.trust_domain, "ClusterName": conf.cluster_name, "ClusterDomain": "cluster.local",
            "PodMeta": {"Name": meta["name"], "Namespace": meta["namespace"], "UID": meta.get("uid", ""),
                        "Labels": meta.get("labels", {}), "Annotations": meta.get("annotations", {})},
            "PodSpec": {"ServiceAccountName": service_account(pod), "NodeName": pod["spec"].get("nodeName", "")},
            "NodeMeta": {"Name": pod["spec"].get("nodeName", "")}, "NodeSpec": {}}


def _render_entry(conf: SpireConfig, csid: Mapping, pod: Mapping) -> Entry:
    spec, node = csid.get("spec") or {}, pod["spec"].get("nodeName", "")
    if not node:
        raise TemplateError("node not found in cache")
    data = _template_data(conf, pod)
    spiffe_id = render(spec.get("spiffeIDTemplate", ""), data)
    if not is_valid_id(spiffe_id):
        raise TemplateError(f"invalid SPIFFE ID: {spiffe_id}")
    if trust_domain_of(spiffe_id) != conf.trust_domain:
        raise TemplateError(f"invalid SPIFFE ID: expected trust domain {conf.trust_domain!r} "
                            f"but got {trust_domain_of(spiffe_id)!r}")
    selectors = [f"k8s:pod-uid:{pod['metadata'].get('uid', '')}"]
    selectors += [render(t, data) for t in spec.get("workloadSelectorTemplates") or []]
    parent = f"spiffe://{conf.trust_domain}/spire/agent/k8s_psat/{conf.cluster_name}/{node}"
    return Entry(csid["metadata"]["name"], pod["metadata"].get("uid", ""), spiffe_id, parent, tuple(sorted(selectors)))


def reconcile(conf: SpireConfig, csids: Sequence[Mapping], namespaces: Sequence[Mapping],
              pods: Sequence[Mapping]) -> Reconciled:
    """One pass of the controller manager over every ClusterSPIFFEID it handles (fallback ones last)."""
    mine = sorted((c for c in csids if handles(conf, c)), key=lambda c: bool((c.get("spec") or {}).get("fallback")))
    result = Reconciled()
    declared: dict[tuple, list[tuple[Mapping, Entry]]] = {}
    covered: set[str] = set()
    for csid in mine:
        spec, stats = csid.get("spec") or {}, dict.fromkeys(STAT_NAMES, 0)
        result.stats[csid["metadata"]["name"]] = stats
        selected = [n for n in namespaces if selector_matches(spec.get("namespaceSelector"),
                                                              n["metadata"].get("labels", {}))]
        stats["namespacesSelected"] = len(selected)
        for ns in selected:
            name = ns["metadata"]["name"]
            if _ignored(conf, name):
                stats["namespacesIgnored"] += 1
                continue
            ns_pods = [p for p in pods if p["metadata"]["namespace"] == name
                       and selector_matches(spec.get("podSelector"), p["metadata"].get("labels", {}))]
            stats["podsSelected"] += len(ns_pods)
            for pod in ns_pods:
                uid = pod["metadata"].get("uid", "")
                if spec.get("fallback") and uid in covered:
                    continue
                try:
                    entry = _render_entry(conf, csid, pod)
                except TemplateError:
                    stats["podEntryRenderFailures"] += 1
                    continue
                declared.setdefault((entry.spiffe_id, entry.parent_id, entry.selectors), []).append((csid, entry))
                if not spec.get("fallback"):
                    covered.add(uid)
    for group in declared.values():
        group.sort(key=lambda ce: (ce[0]["metadata"].get("creationTimestamp", ""), ce[0]["metadata"]["name"]))
        winner_csid, winner = group[0]
        result.stats[winner_csid["metadata"]["name"]]["entriesToSet"] += 1
        result.entries.setdefault(winner.pod_uid, []).append(winner)
        for csid, _ in group[1:]:
            result.stats[csid["metadata"]["name"]]["entriesMasked"] += 1
    return result


def selector_satisfied(selector: str, pod: Mapping) -> bool:
    """Whether the agent's Kubernetes workload attestation of `pod` yields `selector`."""
    kind, _, value = selector.partition(":")
    if kind != "k8s":
        return False
    meta, spec = pod["metadata"], pod["spec"]
    attribute, _, rest = value.partition(":")
    images = {c.get("image") for c in spec.get("containers", [])}
    labels = {f"{k}:{v}" for k, v in meta.get("labels", {}).items()}
    attested = {"ns": {meta["namespace"]}, "sa": {service_account(pod)}, "pod-name": {meta["name"]},
                "pod-uid": {meta.get("uid")}, "node-name": {spec.get("nodeName")}, "pod-label": labels,
                "container-name": {c.get("name") for c in spec.get("containers", [])},
                "container-image": images, "pod-image": images}
    return rest in attested.get(attribute, set())


def svids(entries: Sequence[Entry], pod: Mapping) -> set[str]:
    """SPIFFE IDs the agent hands to `pod`: entries whose selectors all match it."""
    return {e.spiffe_id for e in entries if all(selector_satisfied(s, pod) for s in e.selectors)}
