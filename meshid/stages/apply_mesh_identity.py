"""apply-mesh-identity: the MeshIdentity with the Spire provider; wait until the control plane says Ready.

It applies the guide's Mesh itself first (the same object apply-demo applies: a second server-side apply of it changes
nothing), so it needs only the control plane, and its wait for Ready runs while SPIRE installs and the demo's pods
wait for SPIRE's CSI driver.
"""

from __future__ import annotations

from meshid.conditions import condition, conditions_text, is_true, named
from meshid.errors import WaitTimeout
from meshid.identity import services_disabled, settled
from meshid.manifests import MESH, demo_mesh, mesh_identity
from meshid.stages.context import RunContext
from meshid.stages.output import StageOutput

API = "kuma.io/v1alpha1"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Check the Mesh is Exclusive, apply the MeshIdentity, and report the conditions it reaches."""
    p = ctx.params
    mesh = ctx.apply(demo_mesh(p), out)
    mode = mesh.get("spec", {}).get("meshServices", {}).get("mode", "unset")
    out.check("MID012", mode == "Exclusive", f"Mesh {MESH} meshServices.mode is {mode}")
    identity = ctx.apply(mesh_identity(p), out)
    name, ns = identity["metadata"]["name"], identity["metadata"]["namespace"]
    try:
        obj = ctx.cluster.wait(f"MeshIdentity {ns}/{name} Ready=True", API, "MeshIdentity", named(name, settled),
                               p.timeouts.wait_s, namespace=ns, field_selector=f"metadata.name={name}")[0]
    except WaitTimeout as exc:
        out.check("MID040", False, str(exc))
        return
    text = conditions_text(obj)
    out.touch("MeshIdentity", ns, name, "observed", text)
    disabled = services_disabled(obj)
    deps = condition(obj, "DependenciesReady") or {}
    out.check("MID041", not disabled, f"DependenciesReady=False (MeshServicesDisabled): {deps.get('message', '')}"
              if disabled else "mesh services enabled")
    out.check("MID040", is_true(obj, "Ready"), f"MeshIdentity {ns}/{name}: {text}")
