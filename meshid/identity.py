"""MeshIdentity and MeshService identity facts as pure functions over API objects."""

from __future__ import annotations

from typing import Any

from meshid.conditions import condition, conditions_text, is_true

Obj = dict[str, Any]


def services_disabled(identity: Obj) -> bool:
    """DependenciesReady=False with reason MeshServicesDisabled: the Mesh is not Exclusive."""
    deps = condition(identity, "DependenciesReady") or {}
    return deps.get("status") == "False" and deps.get("reason") == "MeshServicesDisabled"


def settled(identity: Obj) -> tuple[bool, str]:
    """Whether the control plane decided on a MeshIdentity (Ready, or blocked by disabled mesh services)."""
    return is_true(identity, "Ready") or services_disabled(identity), conditions_text(identity)


def lists_identity(services: list[Obj], name: str, spiffe_id: str) -> tuple[bool, str]:
    """Whether MeshService `name` lists `spiffe_id` in spec.identities, and what it lists."""
    svc = next((s for s in services if s["metadata"]["name"] == name), None)
    identities = (svc or {}).get("spec", {}).get("identities", []) or []
    return {"type": "SpiffeID", "value": spiffe_id} in identities, f"MeshService {name} identities: {identities or 'none'}"
