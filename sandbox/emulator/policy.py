"""Who may call whom: the inbound decision of a data plane proxy, as a pure function of proxies and permissions.

Modelled on Kuma 2.12: a proxy serves either the mesh's legacy mTLS certificate, a MeshIdentity certificate (the
SPIRE SVID), no certificate yet (SVID pending), or plaintext. Certificates of the two kinds do not trust each other.
On the server's inbound, MeshTrafficPermissions with `rules` win over `from` ones (a rules MTP silently disables the
`from` MTPs of that inbound); rules are matched in order, each rule's deny before its allow, the first match wins,
else deny; Prefix is a plain string prefix. `from`
entries match the client's tag principals, which only legacy certificates carry. Anything not allowed is denied.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sandbox.emulator.spiffe import trust_domain_of

FROM_KIND_RANK = {"Mesh": 1, "MeshSubset": 2, "MeshService": 3, "MeshServiceSubset": 4}
# kumahq/kuma 2.12.3 api/common/v1alpha1/targetref.go `order`: top-level targetRef kinds, least specific first
TARGET_KIND_ORDER = {"Mesh": 1, "Dataplane": 2, "MeshSubset": 3, "MeshGateway": 4, "MeshService": 5,
                     "MeshExternalService": 6, "MeshMultiZoneService": 7, "MeshServiceSubset": 8, "MeshHTTPRoute": 9}


class Mode(enum.Enum):
    """What a proxy presents on mTLS connections."""

    PLAINTEXT = "plaintext"  # not in the mesh, or the mesh has no mTLS and no identity is in force
    LEGACY = "legacy"  # the mesh CA's certificate (tags as principals)
    IDENTITY = "identity"  # a MeshIdentity certificate: the SPIRE SVID with the Spire provider
    PENDING = "pending"  # MeshIdentity applies but SPIRE has not issued the SVID: no certificate at all


@dataclass(frozen=True)
class Proxy:
    """A data plane proxy as the policy sees it."""

    name: str
    namespace: str
    mode: Mode
    labels: Mapping[str, str] = field(default_factory=dict)
    spiffe_ids: tuple[str, ...] = ()
    tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    services: frozenset[str] = frozenset()
    mesh: str = "default"


@dataclass(frozen=True)
class TargetRef:
    """A policy targetRef (top level or in `from`)."""

    kind: str
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    namespace: str = ""

    @classmethod
    def parse(cls, raw: Mapping | None) -> TargetRef | None:
        """From a manifest's targetRef mapping (None stays None)."""
        if not raw:
            return None
        return cls(kind=raw.get("kind", ""), labels=dict(raw.get("labels") or {}), tags=dict(raw.get("tags") or {}),
                   name=raw.get("name") or "", namespace=raw.get("namespace") or "")


@dataclass(frozen=True)
class Match:
    """A `spiffeID` matcher of a rule."""

    type: str
    value: str

    def matches(self, spiffe_id: str) -> bool:
        """Exact is equality; Prefix is a plain string prefix (no segment boundary)."""
        return spiffe_id == self.value if self.type == "Exact" else spiffe_id.startswith(self.value)


@dataclass(frozen=True)
class Rule:
    """`rules[].default` of a MeshTrafficPermission."""

    allow: tuple[Match, ...] = ()
    allow_with_shadow_deny: tuple[Match, ...] = ()
    deny: tuple[Match, ...] = ()


@dataclass(frozen=True)
class FromEntry:
    """`from[]` of a legacy MeshTrafficPermission."""

    target: TargetRef
    action: str


@dataclass(frozen=True)
class Permission:
    """A MeshTrafficPermission."""

    name: str
    namespace: str
    mesh: str
    in_system_namespace: bool
    target: TargetRef | None
    from_entries: tuple[FromEntry, ...] = ()
    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, manifest: Mapping, system_namespace: str) -> Permission:
        """From a MeshTrafficPermission object as the API returns it."""
        meta, spec = manifest.get("metadata", {}), manifest.get("spec") or {}

        def matches(items: Sequence | None) -> tuple[Match, ...]:
            return tuple(Match(m["spiffeID"]["type"], m["spiffeID"]["value"]) for m in items or [] if "spiffeID" in m)

        rules = tuple(Rule(allow=matches(r.get("default", {}).get("allow")),
                           allow_with_shadow_deny=matches(r.get("default", {}).get("allowWithShadowDeny")),
                           deny=matches(r.get("default", {}).get("deny"))) for r in spec.get("rules") or [])
        from_entries = tuple(FromEntry(TargetRef.parse(f.get("targetRef")) or TargetRef("Mesh"),
                                       (f.get("default") or {}).get("action", "Allow")) for f in spec.get("from") or [])
        namespace = meta.get("namespace", "")
        return cls(name=meta.get("name", ""), namespace=namespace,
                   mesh=(meta.get("labels") or {}).get("kuma.io/mesh", "default"),
                   in_system_namespace=namespace == system_namespace, target=TargetRef.parse(spec.get("targetRef")),
                   from_entries=from_entries, rules=rules)


class Transport(enum.Enum):
    """What the connection to the server's inbound listener does before any request (Envoy's TLS handshake)."""

    PLAINTEXT = "plaintext"  # the inbound has no TLS, and no RBAC filter
    HANDSHAKE = "handshake"  # the mTLS handshake completes; the RBAC filter judges each request
    UNTRUSTED = "untrusted"  # the client rejects the server's certificate (another CA or trust domain) and aborts
    PLAINTEXT_CLIENT = "plaintext client"  # plaintext bytes on a TLS inbound
    NO_CLIENT_CERT = "no client certificate"  # the client's secret is missing: it closes before sending any TLS
    NO_SERVER_CERT = "no server certificate"  # the inbound listener waits for its secret: nothing accepts


@dataclass(frozen=True)
class Decision:
    """The verdict of the server's inbound, why, and what the connection's TLS did."""

    allowed: bool
    reason: str
    transport: Transport = Transport.HANDSHAKE
    shadow_deny: bool = False  # an allowWithShadowDeny rule applies: the shadow RBAC engine denies


def _subset(wanted: Mapping[str, str], have: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in wanted.items())


def _tags_match(wanted: Mapping[str, str], tags: Mapping[str, frozenset[str]]) -> bool:
    return all(v in tags.get(k, frozenset()) for k, v in wanted.items())


def selects(permission: Permission, proxy: Proxy) -> bool:
    """True when the permission's top-level targetRef selects `proxy`."""
    if permission.mesh != proxy.mesh:
        return False
    if not permission.in_system_namespace and permission.namespace != proxy.namespace:
        return False
    ref = permission.target
    if ref is None or ref.kind == "Mesh":
        return True
    if ref.kind == "Dataplane":
        return _subset(ref.labels, proxy.labels) and (not ref.name or ref.name == proxy.name)
    if ref.kind == "MeshSubset":
        return _tags_match(ref.tags, proxy.tags)
    if ref.kind in ("MeshService", "MeshServiceSubset"):
        return ref.name in proxy.services and _tags_match(ref.tags, proxy.tags)
    return False


def _from_matches(entry: FromEntry, client: Proxy) -> bool:
    ref = entry.target
    if ref.kind == "Mesh":
        return True
    if client.mode is not Mode.LEGACY:
        return False  # tag principals live only in the mesh CA's certificates
    if ref.kind == "MeshSubset":
        return _tags_match(ref.tags, client.tags)
    if ref.kind in ("MeshService", "MeshServiceSubset"):
        return ref.name in client.services and _tags_match(ref.tags, client.tags)
    return False


def _policy_order(permission: Permission) -> tuple[int, int, int]:
    """rules/sort/sort.go CompareByPolicyAttributes: top-level kind, then (Dataplane) labels before a name, then the
    policy role (api/mesh/v1alpha1/dataplane_helpers.go: system before workload-owner); all of a zone's own origin."""
    ref = permission.target or TargetRef("Mesh")
    dataplane = 1 if ref.kind == "Dataplane" and ref.name else 0
    return TARGET_KIND_ORDER.get(ref.kind, 0), dataplane, 1 if permission.in_system_namespace else 4


def ordered_rules(permissions: Sequence[Permission]) -> list[Rule]:
    """The rules of the permissions on an inbound in the order Kuma 2.12.3 builds them (core/rules/inbound
    inboundrules.go buildRules, sort.go Sort): by policy attributes, then by display name descending (stable)."""
    by_name = sorted((p for p in permissions if p.rules), key=lambda p: p.name, reverse=True)
    return [rule for p in sorted(by_name, key=_policy_order) for rule in p.rules]


def _by_rules(rules: Sequence[Rule], client: Proxy) -> Decision:
    """Kuma 2.12.3 meshtrafficpermission/xds/rbac_configurer.go createMatcher: one matcher list
    [rule1 deny, rule1 allow + allowWithShadowDeny, rule2 deny, ...], the first match wins, no match denies."""
    ids = client.spiffe_ids
    for rule in rules:
        for action, matches in ((False, rule.deny), (True, (*rule.allow, *rule.allow_with_shadow_deny))):
            for m in matches:
                if any(m.matches(i) for i in ids):
                    return Decision(action, f"{'allowed' if action else 'denied'} by rule {m.type} {m.value}")
    return Decision(False, f"no rule matches {', '.join(ids) or 'the client'}")


def _by_from(permissions: Sequence[Permission], client: Proxy) -> Decision:
    matched = [(FROM_KIND_RANK.get(e.target.kind, 0), p.name, e) for p in permissions for e in p.from_entries
               if _from_matches(e, client)]
    if not matched:
        return Decision(False, "no MeshTrafficPermission allows the client")
    _, name, entry = max(matched, key=lambda t: (t[0], t[1]))
    allowed = entry.action in ("Allow", "AllowWithShadowDeny")
    return Decision(allowed, f"{entry.action} by from[] of MeshTrafficPermission {name}")


def decide(client: Proxy, server: Proxy, permissions: Sequence[Permission]) -> Decision:
    """Whether `server`'s inbound accepts a request from `client`, given every MeshTrafficPermission."""
    if server.mode is Mode.PLAINTEXT:
        return Decision(True, "the server has no mTLS: permissions are not enforced", Transport.PLAINTEXT)
    if server.mode is Mode.PENDING:
        return Decision(False, "the server has no certificate: SPIRE has not issued its SVID", Transport.NO_SERVER_CERT)
    if client.mode is Mode.PENDING:
        return Decision(False, "the client has no certificate: SPIRE has not issued its SVID", Transport.NO_CLIENT_CERT)
    if client.mode is Mode.PLAINTEXT:
        return Decision(False, "plaintext request to an mTLS inbound", Transport.PLAINTEXT_CLIENT)
    if client.mode is not server.mode:
        return Decision(False, "TLS handshake fails: a MeshIdentity certificate and a mesh CA certificate do not "
                               "trust each other", Transport.UNTRUSTED)
    if client.mode is Mode.IDENTITY and {trust_domain_of(i) for i in client.spiffe_ids} != \
            {trust_domain_of(i) for i in server.spiffe_ids}:
        return Decision(False, "TLS handshake fails: the client's trust domain is not trusted by the server",
                        Transport.UNTRUSTED)
    applying = [p for p in permissions if selects(p, server)]
    with_rules = ordered_rules(applying)
    if with_rules:
        decision = _by_rules(with_rules, client)
        # createShadowMatcher: allowWithShadowDeny entries as DENY, default DENY: any such entry makes it deny
        shadow = any(rule.allow_with_shadow_deny for rule in with_rules)
        return Decision(decision.allowed, decision.reason, shadow_deny=shadow)
    return _by_from([p for p in applying if p.from_entries], client)


def inbound_config(server: Proxy, permissions: Sequence[Permission]) -> tuple:
    """What the server's inbound listener is configured with: its certificate and the permissions applying to it.
    Envoy drains a listener's connections when this changes."""
    return server.mode, server.spiffe_ids, tuple(p for p in permissions if selects(p, server))
