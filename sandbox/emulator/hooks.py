"""What the charts' kubectl hook Jobs would do if their container ran (kwok only marks the Job complete).

Two commands occur in the stand-in charts, as in the real ones: kong-mesh's pre-install
`kubectl patch namespace <ns> --type merge --patch <json>` (labels the system namespace
kuma.io/sidecar-injection=false, which puts it under the validating webhooks) and spire's post-install
`kubectl patch validatingwebhookconfiguration <name> --type=strategic -p <json>` (turns the ClusterSPIFFEID webhook's
failurePolicy from Ignore to Fail). Any other Job is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from kubernetes.client import ApiClient

from sandbox.emulator.kubeapi import MERGE, STRATEGIC, TIMEOUT_S
from sandbox.rawapi import path, request

PATCH_TYPES = {"merge": MERGE, "strategic": STRATEGIC, "json": "application/json-patch+json"}


@dataclass(frozen=True)
class KubectlPatch:
    """A parsed `kubectl patch RESOURCE NAME --type T -p BODY`."""

    resource: str
    name: str
    content_type: str
    body: object


def parse(argv: list[str]) -> KubectlPatch | None:
    """The patch a kubectl command line makes, or None when it is something else."""
    args = argv[1:] if argv[:1] == ["kubectl"] else argv
    if len(args) < 3 or args[0] != "patch":
        return None
    options: dict[str, str] = {}
    i = 3
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if not eq and i + 1 < len(args):
            value, i = args[i + 1], i + 1
        options[{"-p": "--patch", "--patch": "--patch", "--type": "--type"}.get(flag, flag)] = value
        i += 1
    if "--patch" not in options:
        return None
    content_type = PATCH_TYPES.get(options.get("--type", "strategic"), STRATEGIC)
    return KubectlPatch(args[1], args[2], content_type, json.loads(options["--patch"]))


def job_patch(job: Mapping) -> KubectlPatch | None:
    """The kubectl patch of a Job's first container that runs one."""
    for container in job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        found = parse([*container.get("command", []), *container.get("args", [])])
        if found is not None:
            return found
    return None


def run(api: ApiClient, job: Mapping) -> str | None:
    """Apply the Job's kubectl patch, if it has one; return what was done (for the log)."""
    found = job_patch(job)
    if found is None:
        return None
    if found.resource in ("namespace", "namespaces", "ns"):
        where = path("", "v1", "namespaces", "", found.name)
    elif found.resource in ("validatingwebhookconfiguration", "validatingwebhookconfigurations"):
        where = path("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "", found.name)
    else:
        return None
    request(api, "PATCH", where, body=found.body, content_type=found.content_type, timeout_s=TIMEOUT_S)
    meta = job["metadata"]
    return f"ran kubectl patch {found.resource} {found.name} for hook Job {meta['namespace']}/{meta['name']}"
