"""apply-permission: the MeshTrafficPermission that allows the SPIFFE ID prefix (or exact ID)."""

from __future__ import annotations

from meshid.manifests import traffic_permission
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the permission; the next stage checks its effect."""
    p = ctx.params
    applied = ctx.apply(traffic_permission(p), out)
    value = p.permission.resolved_value(p.trust_domain, p.namespaces.demo)
    out.touch("SpiffeID", p.namespaces.demo, value, "allowed", f"{p.permission.type} match in "
                                                              f"MeshTrafficPermission {applied['metadata']['name']}")
