"""What the kubectl containers of the charts' hook Jobs do, since kwok runs no container.

The world's kubelet (`kubelet.py`) holds every pod running a kubectl image until `run` has performed its command, so a
hook Job completes only after its effect, as on a real cluster. The commands of the real charts:
- kong-mesh (kumahq/kuma 2.12.3 deployments/charts/kuma/templates): `kubectl patch namespace <ns> --type merge
  --patch <json>` (pre-install-patch-namespace-job.yaml), `kubectl apply --recursive --filename /kuma/crds` after a
  kumactl init container saved `kumactl install crds` there (pre-upgrade-install-crds-job.yaml), `kubectl delete
  ValidatingWebhookConfiguration --ignore-not-found <name>` (pre-delete-webhooks.yaml);
- spire (spiffe/helm-charts-hardened spire-0.30.0, charts/spire/charts/spire-server/templates/*-hook.yaml):
  `patch validatingwebhookconfiguration <name> --type=strategic -p <json>` (the image's entrypoint is kubectl), and
  the OIDC discovery provider's `delete -n <ns> deployment <name> --wait` (spiffe-oidc-discovery-provider
  pre-delete-hook.yaml).
Other kubectl commands have no modelled effect. A failing command raises CommandFailed with what kubectl prints.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from sandbox.emulator.kubeapi import MERGE, STRATEGIC, TIMEOUT_S
from sandbox.kwokstages import KUBECTL_IMAGE
from sandbox.rawapi import path, request

PATCH_TYPES = {"merge": MERGE, "strategic": STRATEGIC, "json": "application/json-patch+json"}
# kubectl's resource names (kind, singular, plural, short name; case-insensitive) -> (group, version, plural, scope)
RESOURCES = {
    **dict.fromkeys(("namespace", "namespaces", "ns"), ("", "v1", "namespaces", False)),
    **dict.fromkeys(("validatingwebhookconfiguration", "validatingwebhookconfigurations"),
                    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", False)),
    **dict.fromkeys(("deployment", "deployments", "deploy"), ("apps", "v1", "deployments", True)),
}
KUMACTL_IMAGE = re.compile(r"(^|/)kumactl([:@]|$)")
# What the world's kumactl image prints for `kumactl install crds`: the CRDs of the kong-mesh chart of its version.
KUMACTL_CRDS = Path(__file__).resolve().parents[1] / "charts" / "kong-mesh" / "crds"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DELETE_WAIT_S = 60
FLAGS_WITH_VALUE = {"-n", "--namespace", "-p", "--patch", "--type", "-f", "--filename"}


class CommandFailed(Exception):
    """The command failed; the message is what kubectl prints on stderr."""


@dataclass(frozen=True)
class Kubectl:
    """A parsed kubectl command line: the verb, its positional words and its flags."""

    verb: str
    words: tuple[str, ...] = ()
    flags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, argv: list[str]) -> Kubectl | None:
        """`kubectl VERB ...` (or the arguments of an image whose entrypoint is kubectl); None for an empty line."""
        args = argv[1:] if argv[:1] == ["kubectl"] else list(argv)
        words, flags, i = [], {}, 0
        while i < len(args):
            arg = args[i]
            if arg.startswith("-"):
                name, eq, value = arg.partition("=")
                if not eq and name in FLAGS_WITH_VALUE and i + 1 < len(args):
                    value, i = args[i + 1], i + 1
                flags[{"-n": "--namespace", "-p": "--patch", "-f": "--filename"}.get(name, name)] = value if eq or \
                    name in FLAGS_WITH_VALUE else "true"
            else:
                words.append(arg)
            i += 1
        return cls(words[0], tuple(words[1:]), flags) if words else None


def command_of(pod: Mapping) -> list[str] | None:
    """The command line of the pod's kubectl container (command + args), or None when it runs none."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if re.search(KUBECTL_IMAGE, container.get("image") or ""):
            return [*(container.get("command") or []), *(container.get("args") or [])]
    return None


def _where(resource: str, name: str, namespace: str) -> str:
    found = RESOURCES.get(resource.lower())
    if found is None:
        raise KeyError(resource)
    group, version, plural, namespaced = found
    return path(group, version, plural, namespace if namespaced else "", name)


def _server_error(exc: ApiException) -> CommandFailed:
    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        status = {}
    return CommandFailed(f"Error from server ({status.get('reason') or exc.reason}): "
                         f"{status.get('message') or exc.body}")


def _patch(api: ApiClient, cmd: Kubectl, namespace: str) -> str:
    resource, name = cmd.words[:2]
    content_type = PATCH_TYPES.get(cmd.flags.get("--type", "strategic"), STRATEGIC)
    request(api, "PATCH", _where(resource, name, namespace), body=json.loads(cmd.flags["--patch"]),
            content_type=content_type, timeout_s=TIMEOUT_S)
    return f"patched {resource} {name}"


def _delete(api: ApiClient, cmd: Kubectl, namespace: str) -> str:
    resource, name = cmd.words[:2]
    where = _where(resource, name, namespace)
    try:
        request(api, "DELETE", where, timeout_s=TIMEOUT_S)
    except ApiException as exc:
        if exc.status == 404 and cmd.flags.get("--ignore-not-found") in ("true", ""):
            return f"{resource} {name} was already gone"
        raise
    if cmd.flags.get("--wait", "true") != "false":  # kubectl delete waits for the object to be gone by default
        deadline = time.monotonic() + DELETE_WAIT_S
        while time.monotonic() < deadline:
            try:
                request(api, "GET", where, timeout_s=TIMEOUT_S)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            time.sleep(0.2)
        else:
            raise CommandFailed(f"error: timed out waiting for the condition on {resource}/{name}")
    return f"deleted {resource} {name}"


def _apply_crds(api: ApiClient, pod: Mapping, folder: str) -> str:
    """`kubectl apply --recursive --filename DIR` of a folder a kumactl init container filled with its CRDs."""
    spec = pod.get("spec") or {}
    filled = {m.get("name") for c in spec.get("initContainers") or [] if KUMACTL_IMAGE.search(c.get("image") or "")
              for m in c.get("volumeMounts") or [] if m.get("mountPath") == folder}
    if not filled:
        raise CommandFailed(f'error: the path "{folder}" does not exist')
    names = []
    for file in sorted(KUMACTL_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(file.read_text())
        crd["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(crd, separators=(",", ":"))
        where = path("apiextensions.k8s.io", "v1", "customresourcedefinitions", "", crd["metadata"]["name"])
        try:
            request(api, "PATCH", where, body=crd, content_type=MERGE, timeout_s=TIMEOUT_S)
        except ApiException as exc:
            if exc.status != 404:
                raise
            request(api, "POST", path("apiextensions.k8s.io", "v1", "customresourcedefinitions"), body=crd,
                    timeout_s=TIMEOUT_S)
        names.append(crd["metadata"]["name"])
    return f"applied {len(names)} CRDs from {folder}"


def run(api: ApiClient, pod: Mapping) -> str:
    """Perform the pod's kubectl command; return what it did (for the log), raise CommandFailed like kubectl."""
    argv = command_of(pod) or []
    cmd = Kubectl.parse(argv)
    if cmd is None:
        return "no kubectl command"
    namespace = cmd.flags.get("--namespace") or pod["metadata"].get("namespace", "default")
    try:
        if cmd.verb == "patch" and len(cmd.words) >= 2 and "--patch" in cmd.flags:
            return _patch(api, cmd, namespace)
        if cmd.verb == "delete" and len(cmd.words) >= 2:
            return _delete(api, cmd, namespace)
        if cmd.verb == "apply" and "--filename" in cmd.flags:
            return _apply_crds(api, pod, cmd.flags["--filename"])
    except KeyError as exc:
        raise CommandFailed(f'error: the server doesn\'t have a resource type "{exc.args[0]}"') from exc
    except ApiException as exc:
        raise _server_error(exc) from exc
    return f"kubectl {cmd.verb}: no modelled effect"
