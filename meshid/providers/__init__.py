"""Cluster providers: where a target's cluster comes from (`sandbox`, `minikube`, `kind`, an existing `context`)."""

from __future__ import annotations

from pathlib import Path

from meshid.errors import InputError
from meshid.models import ProviderName, Target
from meshid.providers.base import Check, ClusterHandle, Provider
from meshid.providers.context import ContextProvider
from meshid.providers.kind import KindProvider
from meshid.providers.minikube import MinikubeProvider
from meshid.providers.sandbox import SandboxProvider
from meshid.settings import MeshidSettings

__all__ = ["Check", "ClusterHandle", "Provider", "provider_for"]

_CREATED: dict[ProviderName, type[Provider]] = {
    ProviderName.SANDBOX: SandboxProvider,
    ProviderName.MINIKUBE: MinikubeProvider,
    ProviderName.KIND: KindProvider,
}


def provider_for(target: Target, settings: MeshidSettings, workdir: Path,
                 kubeconfig_text: str | None = None) -> Provider:
    """The provider of `target`; `kubeconfig_text` is a kubeconfig the flow read from a Prefect Secret block
    (provider `context` only: it is written to a 0600 file in `workdir` and its credentials are redacted)."""
    if target.provider is ProviderName.CONTEXT:
        return ContextProvider(target, settings, workdir, kubeconfig_text)
    if target.kubeconfig or target.kubeconfig_secret_block or kubeconfig_text is not None:
        field = "target.kubeconfig" if target.kubeconfig else "target.kubeconfig_secret_block"
        raise InputError(field, f"provider {target.provider.value!r} creates its own cluster and kubeconfig",
                         "drop the kubeconfig, or use provider 'context' for an existing cluster")
    return _CREATED[target.provider](target, settings, workdir)
