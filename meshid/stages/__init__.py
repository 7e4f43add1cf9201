"""The guide's stages and the two orders a run takes them in: each stage module has `run(ctx, out)`; no Prefect here.

validate (the guide's order): the MeshIdentity first, then traffic is checked denied, then the permission lets it in.
rollout (production): the permissions first (the guide's, and the `rules` equivalents of the legacy ones the switch
would break), then SPIRE, injection, registration, the MeshIdentity and restarts: nothing allowed is ever denied,
and the negative probe (a client the permission does not admit) proves enforcement instead of a denial of real
traffic. Both end with the probe and cleanup.
"""

from meshid.models import RunMode

STAGES = (
    "preflight",
    "cluster-start",
    "install-kong-mesh",
    "apply-demo",
    "install-spire",
    "enable-injection",
    "register-spiffe-ids",
    "apply-mesh-identity",
    "restart-workloads",
    "connectivity-before-permission",
    "apply-permission",
    "connectivity-after-permission",
    "connectivity-probe",
    "cleanup",
)
ROLLOUT_STAGES = (
    "preflight",
    "cluster-start",
    "install-kong-mesh",
    "apply-demo",
    "apply-permission",
    "install-spire",
    "enable-injection",
    "register-spiffe-ids",
    "apply-mesh-identity",
    "restart-workloads",
    "connectivity-after-permission",
    "connectivity-probe",
    "cleanup",
)

# What each stage needs finished (and passed) first. Independent branches run concurrently: SPIRE installs while
# Kong Mesh and the demo come up, the MeshIdentity turns Ready meanwhile, and SPIRE's registration is proven while
# the workloads restart (the controller reconciles continuously: restarted pods get entries whenever the CR is there;
# the connectivity checks need it proven). The probe is checked beside the allowed calls: it must be denied before
# and after the permission takes effect alike.
DEPENDS: dict[str, tuple[str, ...]] = {
    "preflight": (),
    "cluster-start": ("preflight",),
    "install-kong-mesh": ("cluster-start",),
    "install-spire": ("cluster-start",),
    "apply-demo": ("install-kong-mesh",),
    "enable-injection": ("install-kong-mesh",),
    "register-spiffe-ids": ("install-spire", "apply-demo"),
    "apply-mesh-identity": ("install-kong-mesh",),
    "restart-workloads": ("enable-injection", "apply-demo", "apply-mesh-identity"),
    "connectivity-before-permission": ("restart-workloads",),
    "apply-permission": ("connectivity-before-permission",),
    "connectivity-after-permission": ("apply-permission", "register-spiffe-ids"),
    "connectivity-probe": ("apply-permission", "register-spiffe-ids"),
}
ROLLOUT_DEPENDS: dict[str, tuple[str, ...]] = {
    "preflight": (),
    "cluster-start": ("preflight",),
    "install-kong-mesh": ("cluster-start",),
    "install-spire": ("cluster-start",),
    "apply-demo": ("install-kong-mesh",),
    "apply-permission": ("apply-demo",),
    "enable-injection": ("install-kong-mesh",),
    "register-spiffe-ids": ("install-spire", "apply-demo"),
    "apply-mesh-identity": ("apply-permission", "enable-injection", "register-spiffe-ids"),
    "restart-workloads": ("apply-mesh-identity",),
    "connectivity-after-permission": ("restart-workloads",),
    "connectivity-probe": ("connectivity-after-permission",),
}
FINALLY = "cleanup"  # runs after everything else, whatever happened


def graph(mode: RunMode) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The stages of a run in `mode`, in report order, and what each waits for."""
    return (ROLLOUT_STAGES, ROLLOUT_DEPENDS) if mode is RunMode.ROLLOUT else (STAGES, DEPENDS)
