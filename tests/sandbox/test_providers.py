"""Providers against real sandboxes: the sandbox provider starts and deletes one, `context` reaches one."""

from __future__ import annotations

import os

import pytest

from meshid.errors import InputError
from meshid.kube import Cluster
from meshid.models import Target
from meshid.providers import provider_for
from meshid.settings import MeshidSettings
from sandbox import lifecycle
from sandbox.errors import UnknownSandbox


def test_sandbox_provider_starts_and_deletes_its_own_sandbox(tmp_path):
    provider = provider_for(Target(cluster=f"prov-{os.getpid()}"), MeshidSettings(sandbox_tick_s=0.5), tmp_path)
    handle = provider.start(120)
    try:
        assert handle.owned and handle.cluster == provider.cluster and handle.chart_mirror.startswith("http://")
        cluster = Cluster(handle.kubeconfig, handle.context)
        try:
            assert cluster.version().startswith("v")
        finally:
            cluster.close()
    finally:
        provider.delete(handle, 120)
    with pytest.raises(UnknownSandbox):
        lifecycle.get(handle.cluster)
    provider.delete(handle, 120)  # already gone: nothing to do


def test_a_sandbox_that_is_already_up_is_bad_input(sandbox_cluster, tmp_path):
    with pytest.raises(InputError) as err:
        provider_for(Target(cluster=sandbox_cluster.name), MeshidSettings(), tmp_path).start(60)
    assert err.value.field == "target.cluster" and "already up" in err.value.problem


def test_context_provider_reaches_an_existing_cluster_and_never_deletes_it(sandbox_cluster, tmp_path):
    target = Target(provider="context", kubeconfig_secret_block="sandbox-kubeconfig")
    provider = provider_for(target, MeshidSettings(), tmp_path, sandbox_cluster.kubeconfig.read_text())
    handle = provider.start(30)
    assert not handle.owned and handle.kubeconfig.parent == tmp_path and handle.context
    provider.delete(handle, 30)
    assert sandbox_cluster.running()
