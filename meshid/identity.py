"""MeshIdentity, MeshService and MeshTrafficPermission identity facts as pure functions over API objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshid import checks
from meshid.checks import Judgement
from meshid.conditions import condition, conditions_text, is_true

Obj = dict[str, Any]


def services_disabled(identity: Obj) -> bool:
    """DependenciesReady=False with reason MeshServicesDisabled: the Mesh is not Exclusive."""
    deps = condition(identity, "DependenciesReady") or {}
    return deps.get("status") == "False" and deps.get("reason") == "MeshServicesDisabled"


def settled(identity: Obj) -> tuple[bool, str]:
    """Whether the control plane decided on a MeshIdentity (Ready, or blocked by disabled mesh services)."""
    return is_true(identity, "Ready") or services_disabled(identity), conditions_text(identity)


@checks.evaluates(checks.MID051)
def lists_identity(services: list[Obj], name: str, spiffe_id: str) -> Judgement:
    """MID051: whether MeshService `name` lists `spiffe_id` in spec.identities, and what it lists."""
    svc = next((s for s in services if s["metadata"]["name"] == name), None)
    identities = (svc or {}).get("spec", {}).get("identities", []) or []
    if {"type": "SpiffeID", "value": spiffe_id} in identities:
        return True, f"MeshService {name} lists {spiffe_id}"
    return False, f"MeshService {name} identities: {identities or 'none'}"


def spiffe_id_matches(match: Mapping[str, Any], spiffe_id: str) -> bool:
    """Whether a MeshTrafficPermission `spiffeID` match (`{type: Exact|Prefix, value}`) covers `spiffe_id`."""
    value = match.get("value") or ""
    return spiffe_id.startswith(value) if match.get("type") == "Prefix" else spiffe_id == value


def permits(permission: Obj, spiffe_id: str) -> bool:
    """Whether a MeshTrafficPermission's rules let `spiffe_id` in. Kuma 2.12 matches them in order, each rule's deny
    before its allow (`[rule1.deny, rule1.allow, rule2.deny, ...]`), the first match wins and nothing matched is denied
    (kumahq/kuma 2.12.3 pkg/plugins/policies/meshtrafficpermission/xds/rbac_configurer.go, createMatcher). Legacy
    `from` entries match service tags, which no SPIRE identity carries, so they never do."""
    for rule in permission.get("spec", {}).get("rules") or []:
        default = rule.get("default") or {}

        def matched(*keys: str) -> bool:
            return any(spiffe_id_matches(entry.get("spiffeID") or {}, spiffe_id)
                       for key in keys for entry in default.get(key) or [])

        if matched("deny"):
            return False
        if matched("allow", "allowWithShadowDeny"):
            return True
    return False
