"""An existing cluster, reached through a kubeconfig (a file, or a Prefect Secret block's content) and a context."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from meshid.errors import InputError
from meshid.kube import Cluster
from meshid.kubeconfig import load_kubeconfig
from meshid.models import ProviderName, Target
from meshid.providers.base import Check, ClusterHandle, Provider
from meshid.redact import register_secret
from meshid.settings import MeshidSettings

_SECRET_KEY = re.compile(r"token|key|password|secret", re.IGNORECASE)


class ContextProvider(Provider):
    """A cluster meshid neither starts nor deletes: start checks the kubeconfig, the context and that the API
    answers; cleanup removes only what the run created."""

    name = ProviderName.CONTEXT

    def __init__(self, target: Target, settings: MeshidSettings, workdir: Path,
                 kubeconfig_text: str | None = None) -> None:
        super().__init__(target, settings, workdir)
        if kubeconfig_text is not None:
            self.field = "target.kubeconfig_secret_block"
            self.kubeconfig = _write_private(workdir / f"context-{target.name}.kubeconfig", kubeconfig_text)
        elif target.kubeconfig is not None:
            self.field, self.kubeconfig = "target.kubeconfig", target.kubeconfig.expanduser()
        else:
            raise InputError("target.kubeconfig", "provider 'context' needs a kubeconfig",
                             "set kubeconfig to a file or kubeconfig_secret_block to a Prefect Secret block name")

    def validate(self) -> str | None:
        """Check the kubeconfig and the context without contacting the cluster; return the context to use."""
        try:
            data = load_kubeconfig(self.kubeconfig, self.target.context)
        except InputError as exc:
            if exc.field == "target.kubeconfig" and self.field != exc.field:
                block = self.target.kubeconfig_secret_block or "the kubeconfig given"
                raise InputError(self.field, f"Secret block {block}: {exc.problem}", exc.fix) from None
            raise
        return self.target.context or data.get("current-context")

    def preflight(self) -> list[Check]:
        try:
            context = self.validate()
        except InputError as exc:
            return [(False, str(exc))]
        return [(True, f"kubeconfig {self.kubeconfig} has context {context}")]

    def start(self, timeout_s: float, creating: Callable[[], None] = lambda: None) -> ClusterHandle:
        """Validate (InputError before any cluster is contacted), then check the API server answers; creates
        nothing."""
        context = self.validate()
        cluster = Cluster(self.kubeconfig, context, timeout_s=min(timeout_s, self.settings.api_timeout_s))
        try:
            cluster.version()
        finally:
            cluster.close()
        return self.handle(self.kubeconfig, context, owned=False)

    def delete(self, handle: ClusterHandle, timeout_s: float) -> None:
        """An existing cluster is never deleted."""


def _write_private(path: Path, text: str) -> Path:
    """Write a kubeconfig readable by its owner only and register its credentials with `meshid.redact`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT keeps the mode of a file that already existed
    with os.fdopen(fd, "w") as out:
        out.write(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return path  # validate() reports it, without the content
    if isinstance(data, dict):
        _register_credentials(data.get("users"))
    return path


def _register_credentials(node: Any) -> None:
    """Register every string under a token / key / password / secret key, however nested."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and _SECRET_KEY.search(str(key)):
                register_secret(value)
            else:
                _register_credentials(value)
    elif isinstance(node, list):
        for item in node:
            _register_credentials(item)
