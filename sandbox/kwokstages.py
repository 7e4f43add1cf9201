"""The Stages kwok plays on a sandbox: kwok's own defaults, with one hold on pod-ready.

kwokctl (v0.8.0, pkg/kwokctl/runtime/cluster.go `Save`) writes its default Stages only when the config file has none:
node-initialize, node-heartbeat-with-lease (the default lease is 40 s; kwokctl would raise its delay to the 10 s
node-status-update frequency, which the stage's 600 s already exceeds), pod-ready, pod-complete and pod-delete from
kustomize/stage/. The sandbox writes those same files (copied from the kwok module by `build.sh`) into its config, and
adds one selector to pod-ready: a pod the world's kubelet must prepare first stays Pending until the emulator marks it
started. Such pods are the ones whose start a kubelet does not control alone:
- a pod with an inline CSI volume: the kubelet mounts it only once the CSI driver's node plugin registered on the node;
- a pod running a kubectl image (the charts' hook Jobs): its command must have had its effect before it completes.
Every other pod starts exactly as with kwokctl's defaults. kwok evaluates selector keys as jq (gojq) queries; a query
yielding `true` matches `In ["true"]` (pkg/utils/expression/selector.go).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import yaml

STARTED = "sandbox.meshid.local/kubelet-started"  # annotation "true": the world's kubelet let the pod start
KUBECTL_IMAGE = r"(^|/)kubectl([:@]|$)"
_HELD = ('(([.spec.volumes[]? | select(.csi != null)] | length) > 0 or '
         f'([.spec.containers[]?.image | select(test("{KUBECTL_IMAGE}"))] | length) > 0)')
# True when kwok may make the pod ready: nothing to prepare, or the world's kubelet has started it.
MAY_START = f'({_HELD} | not) or .metadata.annotations["{STARTED}"] == "true"'
_KUBECTL = re.compile(KUBECTL_IMAGE)


def needs_kubelet(pod: Mapping) -> bool:
    """The Python twin of the jq hold: the pod has an inline CSI volume or runs a kubectl image."""
    spec = pod.get("spec") or {}
    return any(v.get("csi") is not None for v in spec.get("volumes") or []) or \
        any(_KUBECTL.search(c.get("image") or "") for c in spec.get("containers") or [])


def started(pod: Mapping) -> bool:
    """True once the world's kubelet marked the pod started."""
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(STARTED) == "true"


def _held_pod_ready(stage: dict) -> dict:
    stage["spec"]["selector"]["matchExpressions"].append({"key": MAY_START, "operator": "In", "values": ["true"]})
    return stage


@cache  # the files are kwok's, cached by version: the same for every sandbox a process starts
def documents(stages_dir: Path, names: tuple[str, ...]) -> str:
    """The Stage documents for a kwokctl config file, read from kwok's own files in `stages_dir`."""
    stages = [yaml.safe_load((stages_dir / f"{name}.yaml").read_text()) for name in names]
    stages = [_held_pod_ready(s) if s["metadata"]["name"] == "pod-ready" else s for s in stages]
    return "".join("---\n" + yaml.safe_dump(s, sort_keys=False, width=1000) for s in stages)
