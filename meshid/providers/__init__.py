"""Cluster providers: where a target's cluster comes from (`sandbox`, `minikube`, `kind`, an existing `context`).

A provider's module is imported when a target uses it: `meshid sandbox ...` loads the sandbox provider alone, not the
Kubernetes client the context provider reads kubeconfigs with."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from meshid.errors import InputError
from meshid.models import ProviderName, Target
from meshid.providers.base import Check, ClusterHandle, Provider
from meshid.settings import MeshidSettings

__all__ = ["Check", "ClusterHandle", "Provider", "provider_for"]

# provider -> (module, class) of the providers that create their cluster
_CREATED: dict[ProviderName, tuple[str, str]] = {
    ProviderName.SANDBOX: ("meshid.providers.sandbox", "SandboxProvider"),
    ProviderName.MINIKUBE: ("meshid.providers.minikube", "MinikubeProvider"),
    ProviderName.KIND: ("meshid.providers.kind", "KindProvider"),
}


def provider_for(target: Target, settings: MeshidSettings, workdir: Path,
                 kubeconfig_text: str | None = None) -> Provider:
    """The provider of `target`; `kubeconfig_text` is a kubeconfig the flow read from a Prefect Secret block
    (provider `context` only: it is written to a 0600 file in `workdir` and its credentials are redacted)."""
    if target.provider is ProviderName.CONTEXT:
        from meshid.providers.context import ContextProvider

        return ContextProvider(target, settings, workdir, kubeconfig_text)
    if target.kubeconfig or target.kubeconfig_secret_block or kubeconfig_text is not None:
        field = "target.kubeconfig" if target.kubeconfig else "target.kubeconfig_secret_block"
        raise InputError(field, f"provider {target.provider.value!r} creates its own cluster and kubeconfig",
                         "drop the kubeconfig, or use provider 'context' for an existing cluster")
    module, cls = _CREATED[target.provider]
    return getattr(import_module(module), cls)(target, settings, workdir)
