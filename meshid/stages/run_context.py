"""What the stages of one run share, none of it reassigned once the run started: parameters, settings, the run's id
and directory, the ledger every change is recorded in, the provider; bound to the cluster (`on`), its API and helm.

A stage gets the cluster from the stage that started or reached it (its body returns the handle), through the flow."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from meshid import tools
from meshid.errors import InputError
from meshid.helm import Helm, Release, covers, set_values
from meshid.kube import Cluster
from meshid.kubeconfig import api_server
from meshid.ledger import FILE, AppliedObject, AppliedRelease, Ledger
from meshid.manifests import RUN_ID_ANNOTATION, stamp
from meshid.models import ChartSource, GuideParams, ProviderName
from meshid.naming import slug
from meshid.providers import ClusterHandle, Provider, provider_for
from meshid.runrecord import RunRecord, Writer
from meshid.settings import MeshidSettings
from meshid.stages.output import StageOutput


APPLY_WORKERS = 4  # concurrent apply requests of one apply_all
CRD_API = "apiextensions.k8s.io/v1"
RUN_ENV = "MESHID_RUN_ID"  # on the run's helm subprocesses: recovery ends those a dead run left running
T = TypeVar("T")


def new_run_id(params: GuideParams) -> str:
    """A sortable, unique run id naming the target and trust domain."""
    stamp_ = datetime.now(UTC).strftime("%Y%m%dt%H%M%S")
    return f"{stamp_}-{slug(params.target.name)}-{slug(params.trust_domain)}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunContext:
    """One run of the guide on one cluster; `handle` is the cluster once a stage started or reached it (`on`)."""

    params: GuideParams
    settings: MeshidSettings
    run_id: str
    run_dir: Path
    ledger: Ledger
    kubeconfig_text: str | None = None
    handle: ClusterHandle | None = None
    # the provider, and an API client and helm per cluster: made once, shared by every binding of the run
    _made: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @classmethod
    def create(cls, params: GuideParams, settings: MeshidSettings, run_id: str | None = None,
               kubeconfig_text: str | None = None, flow_run_id: str | None = None,
               root_flow_run_id: str | None = None) -> RunContext:
        """A new run: its id, its directory under `settings.runs_dir`, a ledger saved there holding its record."""
        run_id = run_id or new_run_id(params)
        run_dir = (settings.runs_dir / run_id).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        ctx = cls(params=params, settings=settings, run_id=run_id, run_dir=run_dir,
                  ledger=Ledger(path=run_dir / FILE), kubeconfig_text=kubeconfig_text)
        ctx.ledger.set_run(ctx._record(flow_run_id, root_flow_run_id))
        return ctx

    def _record(self, flow_run_id: str | None, root_flow_run_id: str | None) -> RunRecord:
        """What recovery needs to find this run's cluster: for `context`, the kubeconfig file (the one a Secret block
        was written to) and the API server it points at; never the kubeconfig's content."""
        target, kubeconfig = self.params.target, None
        if target.provider is ProviderName.CONTEXT:
            try:
                kubeconfig = self.provider.kubeconfig.resolve()
            except InputError:
                pass  # preflight names it, as a failed check
        return RunRecord(run_id=self.run_id, target=target.name, provider=target.provider.value,
                         cluster=target.resolved_cluster, kubeconfig=str(kubeconfig) if kubeconfig else None,
                         context=target.context, server=api_server(kubeconfig, target.context) if kubeconfig else None,
                         trust_domain=self.params.trust_domain, cleanup_policy=self.params.cleanup.value,
                         writer=Writer.current(), flow_run_id=flow_run_id, root_flow_run_id=root_flow_run_id,
                         started_at=datetime.now(UTC))

    def on(self, handle: ClusterHandle | None) -> RunContext:
        """This run bound to `handle`, the cluster a stage started or reached (None: not reached yet)."""
        return replace(self, handle=handle)

    def _once(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._made:
                self._made[key] = make()
            return self._made[key]

    @property
    def provider(self) -> Provider:
        """The provider of the run's target."""
        return self._once("provider", lambda: provider_for(self.params.target, self.settings, self.run_dir,
                                                            self.kubeconfig_text))

    @property
    def cluster(self) -> Cluster:
        """The API of the run's cluster (once bound to it)."""
        handle = self._bound()
        return self._once(("cluster", handle), lambda: Cluster(handle.kubeconfig, handle.context,
                                                               self.settings.api_timeout_s))

    @property
    def helm(self) -> Helm:
        """helm bound to the run's cluster."""
        handle = self._bound()
        return self._once(("helm", handle), lambda: Helm(
            handle.kubeconfig, handle.context, tools.find(self.settings.helm_bin, self.settings.home),
            self.settings.home / "helm", env={RUN_ENV: self.run_id}))

    def _bound(self) -> ClusterHandle:
        if self.handle is None:
            raise RuntimeError("the cluster is not started yet: cluster-start must run first")
        return self.handle

    def chart_repo(self, source: ChartSource) -> str:
        """Where to install `source` from: the parameters' mirror, else the provider's, else the chart's repo."""
        mirror = self.params.charts.mirror or (self.handle.chart_mirror if self.handle else None)
        return mirror or str(source.repo)

    def apply(self, obj: dict[str, Any], out: StageOutput) -> dict[str, Any]:
        """Server-side apply `obj` stamped with the run id; the ledger learns of it before the cluster does."""
        applied, change = self._apply(obj)
        _touch_applied(out, obj, change)
        return applied

    def apply_all(self, objs: list[dict[str, Any]], out: StageOutput) -> list[dict[str, Any]]:
        """apply() every object: Namespaces first, then the rest concurrently, each its own request, as a
        multi-document `kubectl apply` makes them one after another. Touched in the given order; the first
        failure, in that order, is raised once every request has ended (the ledger holds each one tried)."""
        first = [i for i, o in enumerate(objs) if o["kind"] == "Namespace"]
        results = {i: self._apply(objs[i]) for i in first}
        with ThreadPoolExecutor(max_workers=APPLY_WORKERS, thread_name_prefix="meshid-apply") as pool:
            futures = {i: pool.submit(self._apply, o) for i, o in enumerate(objs) if i not in results}
        results.update({i: future.result() for i, future in futures.items()})
        for i, obj in enumerate(objs):
            _touch_applied(out, obj, results[i][1])
        return [results[i][0] for i in range(len(objs))]

    def _apply(self, obj: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Apply one object, recorded first; returns it as applied and what happened to it: created, configured
        (changed) or unchanged. An object an earlier run created keeps that run's id, so applying it as it is
        changes nothing (a re-run that finds everything in place is a no-op)."""
        meta = obj["metadata"]
        ns = meta.get("namespace")
        live = self.cluster.get(obj["apiVersion"], obj["kind"], meta["name"], ns)
        earlier = ((live or {}).get("metadata", {}).get("annotations") or {}).get(RUN_ID_ANNOTATION)
        obj = stamp(obj, earlier or self.run_id)
        self.ledger.record(AppliedObject(obj["apiVersion"], obj["kind"], meta["name"], ns, live is None))
        applied = self.cluster.apply(obj)
        if live is None:
            return applied, "created"
        same = applied["metadata"].get("resourceVersion") == live["metadata"].get("resourceVersion")
        return applied, "unchanged" if same else "configured"

    def install(self, source: ChartSource, release: str, namespace: str, values: list[str], out: StageOutput,
                wait: bool = False, crd_group: str | None = None, claims: tuple[str, ...] = ()) -> Release:
        """`helm upgrade --install` a pinned chart, recording the release (and its earlier revision) first; for a new
        release also the CRDs of `crd_group` and the `claims` that do not exist yet (it leaves them on uninstall).

        A release that is already at the pinned chart with these values is left alone (an upgrade would make a
        revision and run its hooks); one that is not is upgraded keeping its operators' values. Without `wait`, helm
        returns once the objects are created and the stage watches for the readiness it needs.
        """
        created_namespace = AppliedObject("v1", "Namespace", namespace, None, True)
        if self.cluster.get("v1", "Namespace", namespace) is None:  # helm --create-namespace makes it: undo knows
            self.ledger.record(created_namespace)
        # A namespace this run created holds only releases this run recorded: for a new one, helm need not be asked.
        new_release = (self.ledger.recorded(created_namespace) == created_namespace
                       and self.ledger.recorded(AppliedRelease(release, namespace, None)) is None)
        before = None if new_release else self.helm.status(release, namespace)
        if before is not None and self.release_current(before, source, namespace, values):
            out.touch("HelmRelease", namespace, release, "unchanged", f"{before.chart} revision {before.revision}")
            return before
        if before is None:
            self.ledger.record(AppliedRelease(release, namespace, None, crd_group, self._crds(crd_group),
                                              tuple(c for c in claims if self._absent_claim(c, namespace))))
        else:
            self.ledger.record(AppliedRelease(release, namespace, before.revision))
        installed = self.helm.upgrade_install(
            release, source.chart, namespace, repo=self.chart_repo(source), version=source.version, values=values,
            timeout_s=self.params.timeouts.helm_s, keep_values=before is not None, wait=wait,
            client_side=before is not None and before.client_side)
        out.touch("HelmRelease", namespace, release, "upgraded" if before else "installed",
                  f"{installed.chart} revision {installed.revision}: {installed.status}")
        out.versions[f"chart/{source.chart}"] = source.version
        return installed

    def release_current(self, release: Release, source: ChartSource, namespace: str, values: list[str]) -> bool:
        """Whether an installed release is deployed at the pinned chart version and holds these values already."""
        return (release.status == "deployed" and release.chart == f"{source.chart}-{source.version}"
                and covers(self.helm.values(release.name, namespace), set_values(values)))

    def _crds(self, group: str | None) -> tuple[str, ...]:
        """Names of the CRDs of API group `group` now (none asked for without a group)."""
        if group is None:
            return ()
        crds, _ = self.cluster.list(CRD_API, "CustomResourceDefinition")
        return tuple(sorted(c["metadata"]["name"] for c in crds if c.get("spec", {}).get("group") == group))

    def _absent_claim(self, name: str, namespace: str) -> bool:
        """Whether a claim does not exist (its namespace may not exist yet either)."""
        return self.cluster.get("v1", "PersistentVolumeClaim", name, namespace) is None


def _touch_applied(out: StageOutput, obj: dict[str, Any], change: str) -> None:
    out.touch(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"], change)
