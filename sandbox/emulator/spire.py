"""What SPIRE does for the mesh: the controller manager's ClusterSPIFFEID reconciliation and the agent's SVIDs.

Modelled on spire-controller-manager (pkg/spireentry): only ClusterSPIFFEIDs of its class (or classless ones with
watchClassless) are reconciled; fallback ones apply only to pods no other one covers; entries with the same SPIFFE ID,
parent and selectors mask each other (oldest wins); a SPIFFE ID outside SPIRE's trust domain is a render failure, and
so is a pod whose node is not known yet. A pod's entry (entries.go renderPodEntry) has the selector
`k8s:pod-uid:<uid>` plus the rendered workloadSelectorTemplates, the parent ID rendered from the config's
parentIDTemplate (the chart's: .../k8s_psat/<cluster>/<node UID>), the CR's hint, DNS names and TTLs.

SPIRE's parts are found by what the spire chart renders, for any release name and namespace: the controller manager's
ConfigMap (the one key `controller-manager-config.yaml`; its metadata labels name the release), and the pods labelled
`app.kubernetes.io/name` server / agent with `app.kubernetes.io/instance` <release> in that namespace. One SPIRE per
cluster: its CSIDriver `csi.spiffe.io` is cluster-scoped, so a second release of the chart cannot install.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

from sandbox.emulator import store as st
from sandbox.emulator.kuma import pod_ready, selects_pod, service_account
from sandbox.emulator.spiffe import is_valid_id, trust_domain_of
from sandbox.emulator.templates import TemplateError, render

CONFIG_KEY = "controller-manager-config.yaml"
# spire-server chart controller-manager-configmap.yaml / values.yaml (parentIDTemplate) and spire-controller-manager's
# default (pkg/spireentry/entries.go defaultParentIDTemplate uses the node's name; the chart's uses its UID)
DEFAULT_PARENT_ID = "spiffe://{{ .TrustDomain }}/spire/agent/k8s_psat/{{ .ClusterName }}/{{ .NodeMeta.UID }}"
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
    release: str = "spire"
    parent_id_template: str = DEFAULT_PARENT_ID
    webhook_configuration: str = ""
    entry_id_prefix: str = ""

    @property
    def webhook_service(self) -> str:
        """The controller manager's webhook Service: the webhook configuration's name without `<namespace>-`."""
        return self.webhook_configuration.removeprefix(f"{self.namespace}-") or "spire-controller-manager-webhook"


@dataclass(frozen=True)
class Entry:
    """A registration entry SPIRE holds for a pod."""

    csid: str
    pod_uid: str
    spiffe_id: str
    parent_id: str
    selectors: tuple[str, ...]
    hint: str = ""
    dns_names: tuple[str, ...] = ()
    x509_svid_ttl: int = 0
    jwt_svid_ttl: int = 0
    admin: bool = False
    downstream: bool = False
    federates_with: tuple[str, ...] = ()

    @property
    def key(self) -> tuple:
        """What makes two entries the same entry for SPIRE (the controller compares these)."""
        return (self.spiffe_id, self.parent_id, self.selectors, self.hint, self.dns_names, self.x509_svid_ttl,
                self.jwt_svid_ttl, self.admin, self.downstream, self.federates_with)


@dataclass
class Reconciled:
    """One reconciliation: stats per reconciled ClusterSPIFFEID and the entries to set, by pod UID."""

    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    entries: dict[str, list[Entry]] = field(default_factory=dict)


def config(store: st.Store) -> SpireConfig | None:
    """The controller manager config from the spire chart's ConfigMap, or None when SPIRE is not installed."""
    for cm in store.list(st.CONFIGMAPS):
        if CONFIG_KEY in (cm.get("data") or {}):
            raw = yaml.safe_load(cm["data"][CONFIG_KEY]) or {}
            labels = (raw.get("metadata") or {}).get("labels") or {}
            return SpireConfig(namespace=cm["metadata"]["namespace"], trust_domain=str(raw.get("trustDomain", "")),
                               class_name=str(raw.get("className", "")),
                               watch_classless=bool(raw.get("watchClassless", False)),
                               ignore_namespaces=tuple(raw.get("ignoreNamespaces") or ()),
                               cluster_name=str(raw.get("clusterName", "")),
                               release=str(labels.get("app.kubernetes.io/instance", "")),
                               parent_id_template=str(raw.get("parentIDTemplate") or DEFAULT_PARENT_ID),
                               webhook_configuration=str(raw.get("validatingWebhookConfigurationName", "")),
                               entry_id_prefix=str(raw.get("entryIDPrefix") or ""))
    return None


def _component_pods(store: st.Store, conf: SpireConfig, name: str) -> list[dict]:
    return [p for p in store.list(st.PODS, conf.namespace)
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/name") == name
            and p["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == conf.release]


def server_pods(store: st.Store, conf: SpireConfig) -> list[dict]:
    """The pods of the release's spire-server StatefulSet (`<release>-server`)."""
    return _component_pods(store, conf, "server")


def agent_nodes(store: st.Store, conf: SpireConfig) -> set[str]:
    """Nodes with a ready pod of the release's spire-agent DaemonSet."""
    return {p["spec"].get("nodeName", "") for p in _component_pods(store, conf, "agent") if pod_ready(p)}


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


def _meta(obj: Mapping) -> dict:
    meta = obj.get("metadata") or {}
    return {"Name": meta.get("name", ""), "Namespace": meta.get("namespace", ""), "UID": meta.get("uid", ""),
            "Labels": meta.get("labels") or {}, "Annotations": meta.get("annotations") or {}}


def _template_data(conf: SpireConfig, pod: Mapping, node: Mapping) -> dict:
    return {"TrustDomain": conf.trust_domain, "ClusterName": conf.cluster_name, "ClusterDomain": "cluster.local",
            "PodMeta": _meta(pod),
            "PodSpec": {"ServiceAccountName": service_account(pod), "NodeName": pod["spec"].get("nodeName", "")},
            "NodeMeta": _meta(node), "NodeSpec": node.get("spec") or {}}


def _seconds(duration: str | None) -> int:
    """A metav1.Duration (`1h`, `30m`, `90s`, `1h30m`) in whole seconds; 0 when unset."""
    units = {"h": 3600, "m": 60, "s": 1}
    return int(sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", duration or "")))


def _spiffe_id(template: str, data: Mapping, conf: SpireConfig) -> str:
    spiffe_id = render(template, data)
    if not is_valid_id(spiffe_id):
        raise TemplateError(f"invalid SPIFFE ID: {spiffe_id}")
    if trust_domain_of(spiffe_id) != conf.trust_domain:
        raise TemplateError(f"invalid SPIFFE ID: expected trust domain {conf.trust_domain!r} "
                            f"but got {trust_domain_of(spiffe_id)!r}")
    return spiffe_id


def _render_entry(conf: SpireConfig, csid: Mapping, pod: Mapping, nodes: Mapping[str, Mapping],
                  services: Sequence[Mapping]) -> Entry:
    spec, node_name = csid.get("spec") or {}, pod["spec"].get("nodeName", "")
    if node_name not in nodes:
        raise TemplateError(f"node {node_name!r} not found in cache")
    data = _template_data(conf, pod, nodes[node_name])
    spiffe_id = _spiffe_id(spec.get("spiffeIDTemplate", ""), data, conf)
    parent = _spiffe_id(conf.parent_id_template, data, conf)
    selectors = [f"k8s:pod-uid:{pod['metadata'].get('uid', '')}"]
    selectors += [render(t, data) for t in spec.get("workloadSelectorTemplates") or []]
    dns = [render(t, data) for t in spec.get("dnsNameTemplates") or []]
    if spec.get("autoPopulateDNSNames"):
        found = sorted(n for svc in services if selects_pod(svc, pod) for n in (
            svc["metadata"]["name"], f"{svc['metadata']['name']}.{svc['metadata']['namespace']}",
            f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc",
            f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"))
        dns += [n for n in found if n not in dns]
    return Entry(csid["metadata"]["name"], pod["metadata"].get("uid", ""), spiffe_id, parent, tuple(sorted(selectors)),
                 hint=str(spec.get("hint") or ""), dns_names=tuple(dict.fromkeys(dns)),
                 x509_svid_ttl=_seconds(spec.get("ttl")), jwt_svid_ttl=_seconds(spec.get("jwtTtl")),
                 admin=bool(spec.get("admin")), downstream=bool(spec.get("downstream")),
                 federates_with=tuple(spec.get("federatesWith") or ()))


def reconcile(conf: SpireConfig, csids: Sequence[Mapping], namespaces: Sequence[Mapping], pods: Sequence[Mapping],
              nodes: Mapping[str, Mapping], services: Sequence[Mapping] = (),
              skip_namespaces: Sequence[str] = ()) -> Reconciled:
    """One pass of the controller manager over every ClusterSPIFFEID it handles (fallback ones last); pods of
    `skip_namespaces` are left out as if the config's ignoreNamespaces listed them."""
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
            if _ignored(conf, name) or name in skip_namespaces:
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
                    entry = _render_entry(conf, csid, pod, nodes, services)
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


def with_trust_domain(spiffe_id: str, trust_domain: str) -> str:
    """`spiffe_id` with its trust domain replaced by `trust_domain` (unchanged when that is empty)."""
    if not trust_domain:
        return spiffe_id
    return f"spiffe://{trust_domain}/{spiffe_id.removeprefix('spiffe://').partition('/')[2]}".rstrip("/")


def svids(entries: Sequence[Entry], pod: Mapping) -> set[str]:
    """SPIFFE IDs the agent hands to `pod`: entries whose selectors all match it."""
    return {e.spiffe_id for e in entries if all(selector_satisfied(s, pod) for s in e.selectors)}
