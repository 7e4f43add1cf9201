"""apply-permission: the MeshTrafficPermission that allows the SPIFFE ID prefix (or exact ID).

In a rollout it comes before any identity switches, so it must not deny what is allowed now: a `rules` permission on
an inbound makes Kuma ignore that inbound's legacy `from` permissions, so first the `rules` equivalent of each legacy
permission the switch would break goes in (meshid's own demo's always, the others' when `translate_permissions`),
admitting each client under the SPIFFE IDs it carries before and after the switch (meshid.impact).
"""

from __future__ import annotations

from meshid.impact import scan
from meshid.manifests import traffic_permission
from meshid.models import RunMode
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput


def run(ctx: RunContext, out: StageOutput) -> None:
    """Apply the permission (in a rollout, after the equivalents of the legacy ones); a later stage checks its
    effect."""
    p = ctx.params
    if p.mode is RunMode.ROLLOUT:
        impact, _ = scan(ctx.cluster, p)
        for permission in impact.from_permissions:
            if permission.own or p.translate_permissions:
                ctx.apply(permission.equivalent, out)
    applied = ctx.apply(traffic_permission(p), out)
    value = p.permission.resolved_value(p.trust_domain, p.namespaces.demo)
    out.touch("SpiffeID", p.namespaces.demo, value, "allowed", f"{p.permission.type} match in "
                                                              f"MeshTrafficPermission {applied['metadata']['name']}")
