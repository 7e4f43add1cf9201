"""apply-mesh-identity: the MeshIdentity with the Spire provider; wait until the control plane says Ready.

It applies the guide's Mesh itself first (the same object apply-demo applies: a second server-side apply of it changes
nothing), so it needs only the control plane, and its wait for Ready runs while SPIRE installs and the demo's pods
wait for SPIRE's CSI driver.
"""

from __future__ import annotations

from meshid import checks
from meshid.checks import Judgement
from meshid.conditions import Obj, condition, conditions_text, is_true, named
from meshid.errors import WaitTimeout
from meshid.kube import ApiError
from meshid.identity import services_disabled, settled
from meshid.manifests import MESH, demo_mesh, mesh_identity
from meshid.stages.run_context import RunContext
from meshid.stages.output import StageOutput

API = "kuma.io/v1alpha1"


def run(ctx: RunContext, out: StageOutput) -> None:
    """Check the Mesh is Exclusive, apply the MeshIdentity, and report the conditions it reaches."""
    p = ctx.params
    out.check(checks.MID012, ctx.apply(demo_mesh(p), out))
    wanted = mesh_identity(p)
    _narrow_selector(ctx, wanted)
    identity = ctx.apply(wanted, out)
    name, ns = identity["metadata"]["name"], identity["metadata"]["namespace"]
    try:
        obj = ctx.cluster.wait(f"MeshIdentity {ns}/{name} Ready=True", API, "MeshIdentity", named(name, settled),
                               p.timeouts.wait_s, namespace=ns, field_selector=f"metadata.name={name}")[0]
    except WaitTimeout as exc:
        out.add(checks.MID040.failed(str(exc)))
        return
    out.touch("MeshIdentity", ns, name, "observed", conditions_text(obj))
    out.check(checks.MID041, obj)
    out.check(checks.MID040, obj, ns)


@checks.evaluates(checks.MID012)
def mesh_services_exclusive(mesh: Obj) -> Judgement:
    """MID012 for the live Mesh `default` (empty when there is none): its meshServices.mode is Exclusive."""
    mode = mesh.get("spec", {}).get("meshServices", {}).get("mode", "unset")
    return mode == "Exclusive", f"Mesh {MESH} meshServices.mode is {mode}"


@checks.evaluates(checks.MID040)
def identity_ready(identity: Obj | None, ns: str) -> Judgement:
    """MID040 for a live MeshIdentity of namespace `ns` (None when there is none): Ready=True."""
    if identity is None:
        return False, f"no MeshIdentity in {ns}"
    return is_true(identity, "Ready"), f"MeshIdentity {ns}/{identity['metadata']['name']}: {conditions_text(identity)}"


@checks.evaluates(checks.MID041)
def services_enabled(identity: Obj) -> Judgement:
    """MID041 for a MeshIdentity: not DependenciesReady=False for MeshServicesDisabled."""
    meta = identity["metadata"]
    which = f"MeshIdentity {meta.get('namespace')}/{meta['name']}"
    if services_disabled(identity):
        deps = condition(identity, "DependenciesReady") or {}
        return False, f"{which}: DependenciesReady=False (MeshServicesDisabled): {deps.get('message', '')}"
    return True, f"{which}: mesh services enabled"


def dropped_labels(ctx: RunContext, wanted: dict) -> dict[str, None]:
    """The labels a live MeshIdentity's selector has that the wanted one no longer has (as merge-patch removals)."""
    meta = wanted["metadata"]
    try:
        live = ctx.cluster.get(API, "MeshIdentity", meta["name"], meta["namespace"])
    except ApiError as exc:
        if exc.status != 404:
            raise
        live = None  # Kong Mesh's CRDs are not there yet
    labels = ((((live or {}).get("spec") or {}).get("selector") or {}).get("dataplane") or {}).get("matchLabels") or {}
    return {k: None for k in labels if k not in wanted["spec"]["selector"]["dataplane"]["matchLabels"]}


def _narrow_selector(ctx: RunContext, wanted: dict) -> None:
    """Drop the labels the wanted selector no longer has with a merge patch first: a server-side apply that leaves a
    map empty sets it to null (structured-merge-diff), which the CRD rejects."""
    dropped = dropped_labels(ctx, wanted)
    if dropped:
        meta = wanted["metadata"]
        ctx.cluster.patch(API, "MeshIdentity", meta["name"], {"spec": {"selector": {"dataplane": {
            "matchLabels": dropped}}}}, meta["namespace"])
