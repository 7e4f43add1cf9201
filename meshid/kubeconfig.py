"""Kubeconfig files read as YAML, without a Kubernetes client: a context checked, a context's API server URL."""

from __future__ import annotations

from pathlib import Path

import yaml

from meshid.errors import InputError


def load_kubeconfig(path: Path, context: str | None, field: str = "target") -> dict:
    """Read and check a kubeconfig and context; raise InputError naming the field and the fix."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text())
    except OSError as exc:
        raise InputError(f"{field}.kubeconfig", f"cannot read {path} ({exc.strerror})",
                         "give the path of a readable kubeconfig file") from None
    except yaml.YAMLError:
        raise InputError(f"{field}.kubeconfig", f"{path} is not valid YAML",
                         "give a kubeconfig file (kubectl config view --raw > file)") from None
    if not isinstance(data, dict) or not data.get("contexts"):
        raise InputError(f"{field}.kubeconfig", f"{path} has no contexts", "give a kubeconfig with a context")
    names = [c.get("name") for c in data["contexts"]]
    chosen = context or data.get("current-context")
    if chosen not in names:
        raise InputError(f"{field}.context", f"context {chosen!r} is not in {path} (it has: {', '.join(names)})",
                         "give one of the kubeconfig's contexts")
    return data


def api_server(kubeconfig: Path, context: str | None) -> str | None:
    """The API server URL of `context` (or the current one) in `kubeconfig`; None when unreadable."""
    try:
        return api_server_of(Path(kubeconfig).expanduser().read_text(), context)
    except OSError:
        return None


def api_server_of(text: str, context: str | None) -> str | None:
    """The API server URL of `context` (or the current one) in a kubeconfig's text; None when it has none."""
    try:
        data = yaml.safe_load(text)
        name = context or data.get("current-context")
        cluster = next(c["context"]["cluster"] for c in data["contexts"] if c["name"] == name)
        return next(c["cluster"]["server"] for c in data["clusters"] if c["name"] == cluster)
    except (yaml.YAMLError, TypeError, KeyError, AttributeError, StopIteration):
        return None
