"""Which cluster a target is: `cluster_key` (what the target names, as the fleet's parent tells clusters apart
without reading any kubeconfig), and, where the targets run, `lock_name` (what the kubeconfig points at) and
`check_kubeconfigs`: the fleet package's only reads of a kubeconfig."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from meshid.kubeconfig import api_server, api_server_of, load_kubeconfig
from meshid.models import Target
from meshid.naming import slug

if TYPE_CHECKING:
    from meshid.fleet.spec import FleetSpec

LOCK_PREFIX = "meshid-cluster-"


def cluster_key(target: Target) -> str:
    """The cluster a target names, as the fleet's parent tells it without reading any kubeconfig: provider and
    cluster, the kubeconfig file and context, or the Secret block and context. Two jobs with one key never run at
    once; two keys on one API server are kept apart by the lock their runs take (`lock_name`)."""
    if target.kubeconfig_secret_block:
        return f"secret:{target.kubeconfig_secret_block}#{target.context or ''}"
    if target.kubeconfig is not None:
        return f"kubeconfig:{target.kubeconfig}#{target.context or ''}"
    return f"{target.provider.value}:{target.resolved_cluster}"


def lock_name(target: Target, kubeconfig_text: str | None = None) -> str:
    """The name of the cluster's global concurrency limit, `meshid-cluster-<slug>`: the same for every target that
    reaches the same API server (the server of the kubeconfig's context: `kubeconfig_text` for a Secret block's,
    else the file), so two runs never share a cluster. Reads the kubeconfig: call it only where the cluster is
    touched (the run of the target, on whatever machine runs it)."""
    server = None
    if kubeconfig_text is not None:
        server = api_server_of(kubeconfig_text, target.context)
    elif target.kubeconfig is not None:
        server = api_server(target.kubeconfig, target.context)
    key = server or cluster_key(target)
    name = LOCK_PREFIX + slug(key)
    return name if len(name) <= 80 else f"{name[:71]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def check_kubeconfigs(spec: FleetSpec) -> None:
    """Every kubeconfig file a target names exists and has its context (read-only; no cluster is contacted).

    Only where the targets run: with dispatch workers the files are on the workers, not here."""
    for i, target in enumerate(spec.targets):
        if target.kubeconfig is not None:
            load_kubeconfig(target.kubeconfig, target.context, field=f"targets[{i}]")
