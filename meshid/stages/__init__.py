"""The guide's stages, in the guide's order: each module has `run(ctx, out)`; no Prefect here."""

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
    "cleanup",
)

# What each stage needs finished (and passed) first. Independent branches run concurrently: SPIRE installs while
# Kong Mesh and the demo come up.
DEPENDS: dict[str, tuple[str, ...]] = {
    "preflight": (),
    "cluster-start": ("preflight",),
    "install-kong-mesh": ("cluster-start",),
    "install-spire": ("cluster-start",),
    "apply-demo": ("install-kong-mesh",),
    "enable-injection": ("install-kong-mesh",),
    "register-spiffe-ids": ("install-spire", "apply-demo"),
    "apply-mesh-identity": ("apply-demo",),
    "restart-workloads": ("enable-injection", "register-spiffe-ids", "apply-mesh-identity"),
    "connectivity-before-permission": ("restart-workloads",),
    "apply-permission": ("connectivity-before-permission",),
    "connectivity-after-permission": ("apply-permission",),
}
FINALLY = "cleanup"  # runs after everything else, whatever happened
