"""One record per stage (name, body, what diagnostics gather when it fails) and the graph each run mode takes them in.

`tasks.stage` makes one Prefect task of every record and `flows.guide` runs a mode's graph, so a new stage is its
module, its record here, its checks and a test.

validate (the guide's order): the MeshIdentity first, then traffic is checked denied, then the permission lets it in.
rollout (production): the permissions first (the guide's, and the `rules` equivalents of the legacy ones the switch
would break), then SPIRE, injection, registration, the MeshIdentity and restarts: nothing allowed is ever denied,
and the negative probe (a client the permission does not admit) proves enforcement instead of a denial of real
traffic. Both end with the probe and cleanup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from meshid.models import GuideParams, RunMode
from meshid.stages import (apply_demo, apply_mesh_identity, apply_permission, cleanup, cluster_start, connectivity,
                           enable_injection, install_kong_mesh, install_spire, negative_probe, plan, preflight,
                           register_spiffe_ids, restart_workloads, rollback)
from meshid.stages.runner import StageBody

KUMA, SPIRE_API = "kuma.io/v1alpha1", "spire.spiffe.io/v1alpha1"


@dataclass(frozen=True)
class Evidence:
    """What diagnostics gather: namespaces (events, pods, logs), helm releases (name, namespace), custom resource
    kinds (apiVersion, kind)."""

    namespaces: tuple[str, ...] = ()
    releases: tuple[tuple[str, str], ...] = ()
    kinds: tuple[tuple[str, str], ...] = ()

    def __or__(self, other: Evidence) -> Evidence:
        return Evidence(*(tuple(dict.fromkeys(mine + theirs)) for mine, theirs in
                          ((self.namespaces, other.namespaces), (self.releases, other.releases),
                           (self.kinds, other.kinds))))


Collect = Callable[[GuideParams], Evidence]  # the evidence of one part of the world, named from the run's parameters


def kong_mesh(p: GuideParams) -> Evidence:
    """The control plane: its namespace, its release, the Mesh."""
    ns = p.namespaces.control_plane
    return Evidence((ns,), ((install_kong_mesh.RELEASE, ns),), ((KUMA, "Mesh"),))


def spire(p: GuideParams) -> Evidence:
    """SPIRE: its namespace (server, agents, CSI driver), both its releases, the ClusterSPIFFEIDs."""
    s = p.spire
    return Evidence((s.namespace,), ((s.release, s.namespace), (install_spire.CRDS_RELEASE, s.namespace)),
                    ((SPIRE_API, "ClusterSPIFFEID"),))


def demo(p: GuideParams) -> Evidence:
    """The demo's namespace and the MeshServices that list its identities."""
    return Evidence((p.namespaces.demo,), kinds=((KUMA, "MeshService"),))


def probe(p: GuideParams) -> Evidence:
    """The negative probe's namespace."""
    return Evidence((p.namespaces.probe,))


def identity(p: GuideParams) -> Evidence:
    """The MeshIdentities and their conditions."""
    return Evidence(kinds=((KUMA, "MeshIdentity"),))


def permission(p: GuideParams) -> Evidence:
    """The MeshTrafficPermissions."""
    return Evidence(kinds=((KUMA, "MeshTrafficPermission"),))


@dataclass(frozen=True)
class Stage:
    """One stage: its name (the task's, the report's), its body, and what explains a failure of it."""

    name: str
    body: StageBody
    collects: tuple[Collect, ...] = ()

    def evidence(self, params: GuideParams) -> Evidence:
        """What diagnostics gather when this stage fails (beside what the stages it stands on collect)."""
        found = Evidence()
        for part in self.collects:
            found |= part(params)
        return found


PREFLIGHT = Stage("preflight", preflight.run)
CLUSTER_START = Stage("cluster-start", cluster_start.run)
INSTALL_KONG_MESH = Stage("install-kong-mesh", install_kong_mesh.run, (kong_mesh,))
APPLY_DEMO = Stage("apply-demo", apply_demo.run, (demo, probe, spire))  # SPIRE's CSI driver holds injected pods
INSTALL_SPIRE = Stage("install-spire", install_spire.run, (spire,))
ENABLE_INJECTION = Stage("enable-injection", enable_injection.run, (kong_mesh,))
REGISTER_SPIFFE_IDS = Stage("register-spiffe-ids", register_spiffe_ids.run, (spire, demo))
APPLY_MESH_IDENTITY = Stage("apply-mesh-identity", apply_mesh_identity.run, (identity,))
RESTART_WORKLOADS = Stage("restart-workloads", restart_workloads.run, (demo, spire, identity))
CONNECTIVITY_BEFORE_PERMISSION = Stage("connectivity-before-permission", connectivity.before_permission,
                                       (demo, permission))
APPLY_PERMISSION = Stage("apply-permission", apply_permission.run, (permission,))
CONNECTIVITY_AFTER_PERMISSION = Stage("connectivity-after-permission", connectivity.after_permission,
                                      (demo, permission, spire))
CONNECTIVITY_PROBE = Stage("connectivity-probe", negative_probe.run, (probe, permission))
CLEANUP = Stage("cleanup", cleanup.run)  # after every other stage of a run, whatever happened
ROLLBACK = Stage("rollback", rollback.run)  # after cleanup, in a rollout that failed or was interrupted
PLAN = Stage("plan", plan.run)  # a fleet's plan: the one stage of its run

STAGES = (PREFLIGHT, CLUSTER_START, INSTALL_KONG_MESH, APPLY_DEMO, INSTALL_SPIRE, ENABLE_INJECTION,
          REGISTER_SPIFFE_IDS, APPLY_MESH_IDENTITY, RESTART_WORKLOADS, CONNECTIVITY_BEFORE_PERMISSION, APPLY_PERMISSION,
          CONNECTIVITY_AFTER_PERMISSION, CONNECTIVITY_PROBE, CLEANUP, ROLLBACK, PLAN)


@dataclass(frozen=True)
class Graph:
    """A mode's stages in report order, each with the stages it needs finished (and passed) first; `CLEANUP` follows
    them all."""

    depends: Mapping[Stage, tuple[Stage, ...]]

    @property
    def order(self) -> tuple[str, ...]:
        """Every stage's name in report order, cleanup last."""
        return (*(stage.name for stage in self.depends), CLEANUP.name)

    def needs(self) -> dict[str, tuple[str, ...]]:
        """What each stage but cleanup waits for, by name."""
        return {stage.name: tuple(d.name for d in deps) for stage, deps in self.depends.items()}

    def stands_on(self, names: Iterable[str]) -> list[Stage]:
        """The named stages and every stage they wait for, directly or not, in report order."""
        by_name = {stage.name: stage for stage in self.depends}
        found, todo = set(), [by_name[n] for n in names if n in by_name]
        while todo:
            stage = todo.pop()
            if stage not in found:
                found.add(stage)
                todo += self.depends[stage]
        return [stage for stage in self.depends if stage in found]

    def evidence(self, failed: Iterable[str], params: GuideParams) -> Evidence:
        """What diagnostics gather for these failed stages: what explains each, and what the stages they stand on
        put in place."""
        found = Evidence()
        for stage in self.stands_on(failed):
            found |= stage.evidence(params)
        return found


# Independent branches run concurrently: SPIRE installs while Kong Mesh and the demo come up, the MeshIdentity turns
# Ready meanwhile, and SPIRE's registration is proven while the workloads restart (the controller reconciles
# continuously: restarted pods get entries whenever the CR is there; the connectivity checks need it proven). The
# probe is checked beside the allowed calls: it must be denied before and after the permission takes effect alike.
VALIDATE = Graph({
    PREFLIGHT: (),
    CLUSTER_START: (PREFLIGHT,),
    INSTALL_KONG_MESH: (CLUSTER_START,),
    APPLY_DEMO: (INSTALL_KONG_MESH,),
    INSTALL_SPIRE: (CLUSTER_START,),
    ENABLE_INJECTION: (INSTALL_KONG_MESH,),
    REGISTER_SPIFFE_IDS: (INSTALL_SPIRE, APPLY_DEMO),
    APPLY_MESH_IDENTITY: (INSTALL_KONG_MESH,),
    RESTART_WORKLOADS: (ENABLE_INJECTION, APPLY_DEMO, APPLY_MESH_IDENTITY),
    CONNECTIVITY_BEFORE_PERMISSION: (RESTART_WORKLOADS,),
    APPLY_PERMISSION: (CONNECTIVITY_BEFORE_PERMISSION,),
    CONNECTIVITY_AFTER_PERMISSION: (APPLY_PERMISSION, REGISTER_SPIFFE_IDS),
    CONNECTIVITY_PROBE: (APPLY_PERMISSION, REGISTER_SPIFFE_IDS),
})
ROLLOUT = Graph({
    PREFLIGHT: (),
    CLUSTER_START: (PREFLIGHT,),
    INSTALL_KONG_MESH: (CLUSTER_START,),
    APPLY_DEMO: (INSTALL_KONG_MESH,),
    APPLY_PERMISSION: (APPLY_DEMO,),
    INSTALL_SPIRE: (CLUSTER_START,),
    ENABLE_INJECTION: (INSTALL_KONG_MESH,),
    REGISTER_SPIFFE_IDS: (INSTALL_SPIRE, APPLY_DEMO),
    APPLY_MESH_IDENTITY: (APPLY_PERMISSION, ENABLE_INJECTION, REGISTER_SPIFFE_IDS),
    RESTART_WORKLOADS: (APPLY_MESH_IDENTITY,),
    CONNECTIVITY_AFTER_PERMISSION: (RESTART_WORKLOADS,),
    CONNECTIVITY_PROBE: (CONNECTIVITY_AFTER_PERMISSION,),
})


def graph(mode: RunMode) -> Graph:
    """The graph a run in `mode` takes."""
    return ROLLOUT if mode is RunMode.ROLLOUT else VALIDATE
