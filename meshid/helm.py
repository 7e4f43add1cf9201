"""helm as a subprocess for one cluster: argv lists, a timeout on every call, errors classified transient or not."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from meshid.errors import ExternalCallError
from meshid.subprocesses import run_cli

GRACE_S = 30  # the subprocess timeout exceeds helm's own --timeout by this much
RELEASE_NOT_FOUND = "release: not found"  # helm get metadata / uninstall of a release that is not installed


@dataclass(frozen=True)
class Release:
    """A helm release: what `helm get metadata` and `helm upgrade --install -o json` report of it."""

    name: str
    namespace: str
    revision: int
    status: str
    chart: str
    app_version: str
    client_side: bool = False  # installed with client-side apply (helm 3, or helm 4's --server-side=false)

    @classmethod
    def from_release_json(cls, text: str, namespace: str) -> Release:
        """The release in `helm upgrade --install -o json` output (the whole release object)."""
        data = json.loads(text)
        chart = data["chart"]["metadata"]
        return cls(name=data["name"], namespace=data.get("namespace", namespace), revision=data["version"],
                   status=data["info"]["status"], chart=f"{chart['name']}-{chart['version']}",
                   app_version=str(chart.get("appVersion", "")), client_side=data.get("apply_method") == "csa")

    @classmethod
    def from_metadata_json(cls, text: str, namespace: str) -> Release:
        """The release in `helm get metadata -o json` output (helm 4's `status -o json` no longer names the chart)."""
        data = json.loads(text)
        return cls(name=data["name"], namespace=data.get("namespace", namespace), revision=data["revision"],
                   status=data["status"], chart=f"{data['chart']}-{data['version']}",
                   app_version=str(data.get("appVersion", "")), client_side=data.get("applyMethod") == "csa")


@dataclass
class Helm:
    """helm bound to one kubeconfig/context, with its own cache and config folders under `home`, and `env` added to
    its environment."""

    kubeconfig: Path
    context: str | None = None
    binary: str = "helm"
    home: Path = field(default_factory=lambda: Path.home() / ".cache" / "meshid" / "helm")
    env: dict[str, str] = field(default_factory=dict)

    def run(self, args: list[str], what: str, timeout_s: float) -> str:
        """Run `helm ARGS` against this cluster; return stdout or raise ExternalCallError / ExternalTimeout."""
        argv = [self.binary, *args, "--kubeconfig", str(self.kubeconfig)]
        if self.context:
            argv += ["--kube-context", self.context]
        env = {"HELM_CACHE_HOME": str(self.home / "cache"), "HELM_CONFIG_HOME": str(self.home / "config"),
               "HELM_DATA_HOME": str(self.home / "data"), **self.env}
        return run_cli(argv, what, timeout_s, env)

    def version(self, timeout_s: float = 30) -> str:
        """helm's own version, e.g. v4.2.4 (asks no cluster)."""
        return self.run(["version", "--template", "{{ .Version }}"], "helm version", timeout_s).strip()

    def upgrade_install(self, release: str, chart: str, namespace: str, *, repo: str | None, version: str | None,
                        values: Sequence[str] = (), timeout_s: float = 600, wait: bool = True,
                        keep_values: bool = False, client_side: bool = False) -> Release:
        """`helm upgrade --install` (creating the namespace), waiting for readiness when `wait`; with `keep_values`
        (a release that existed before: its operators' values stay, `values` go on top); `client_side` when the
        release was installed with client-side apply (see `_take_over`)."""
        args = ["upgrade", "--install", release, chart, "--namespace", namespace, "--create-namespace",
                "--timeout", f"{int(timeout_s)}s", "--output", "json", *_take_over(client_side)]
        if repo:
            args += ["--repo", repo]
        if version:
            args += ["--version", version]
        if wait:
            args += ["--wait"]
        if keep_values:
            args += ["--reset-then-reuse-values"]  # the new chart's defaults, the last release's values, then ours
        for value in values:
            args += ["--set", value]
        out = self.run(args, f"helm upgrade --install {release}", timeout_s + GRACE_S)
        try:
            return Release.from_release_json(out, namespace)
        except (ValueError, KeyError) as exc:
            # not the output itself: it holds the release's values
            raise ExternalCallError(f"helm upgrade --install {release}",
                                    f"helm printed no readable release JSON ({type(exc).__name__})") from None

    def values(self, release: str, namespace: str, timeout_s: float = 60) -> dict:
        """The values the release was installed or upgraded with (`helm get values`: the user's, not the chart's)."""
        what = f"helm get values {release}"
        out = self.run(["get", "values", release, "--namespace", namespace, "-o", "json"], what, timeout_s)
        try:
            return json.loads(out or "null") or {}
        except ValueError:  # not the output itself: it holds the release's values
            raise ExternalCallError(what, "helm printed no readable values JSON") from None

    def hooks(self, release: str, namespace: str, timeout_s: float = 60) -> list[dict]:
        """The release's hook objects (`helm get hooks`; none when it is not installed): helm keeps them out of the
        release's manifest, so an uninstall never deletes one that outlived its hook (an interrupted install)."""
        try:
            out = self.run(["get", "hooks", release, "--namespace", namespace], f"helm get hooks {release}", timeout_s)
        except ExternalCallError as exc:
            if RELEASE_NOT_FOUND in exc.detail:
                return []
            raise
        return [doc for doc in yaml.safe_load_all(out) if isinstance(doc, dict) and doc.get("kind")]

    def status(self, release: str, namespace: str, timeout_s: float = 60) -> Release | None:
        """The release, or None when it is not installed."""
        try:
            out = self.run(["get", "metadata", release, "--namespace", namespace, "-o", "json"],
                           f"helm get metadata {release}", timeout_s)
        except ExternalCallError as exc:
            if RELEASE_NOT_FOUND in exc.detail:
                return None
            raise
        return Release.from_metadata_json(out, namespace)

    def rollback(self, release: str, namespace: str, revision: int, timeout_s: float = 300,
                 client_side: bool = False) -> None:
        """Return a release to an earlier revision (what a rollout undoes when it upgraded an existing release);
        `client_side` when its current revision was applied client-side (see `_take_over`)."""
        self.run(["rollback", release, str(revision), "--namespace", namespace, "--wait", "--timeout",
                  f"{int(timeout_s)}s", *_take_over(client_side)], f"helm rollback {release}", timeout_s + GRACE_S)

    def uninstall(self, release: str, namespace: str, timeout_s: float = 300) -> bool:
        """Uninstall and wait; False when the release was not installed."""
        try:
            self.run(["uninstall", release, "--namespace", namespace, "--wait", "--timeout", f"{int(timeout_s)}s"],
                     f"helm uninstall {release}", timeout_s + GRACE_S)
        except ExternalCallError as exc:
            if RELEASE_NOT_FOUND in exc.detail:
                return False
            raise
        return True


def set_values(pairs: Sequence[str]) -> dict:
    """The values `--set` pairs give, typed as helm's strvals parser types them (true/false as booleans, integers as
    numbers, null as nothing, the rest as strings), for comparing with `helm get values`."""
    values: dict = {}
    for pair in pairs:
        path, _, raw = pair.partition("=")
        keys = path.split(".")
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = _typed(raw)
    return values


def covers(current: dict, wanted: dict) -> bool:
    """Whether `current` values already hold every one of `wanted` (nested)."""
    return all(covers(current.get(k) or {}, v) if isinstance(v, dict) else current.get(k) == v
               for k, v in wanted.items()) if isinstance(current, dict) else False


def _typed(raw: str) -> object:
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def _take_over(client_side: bool) -> list[str]:
    """--force-conflicts, unless the release is applied client-side (helm refuses the flag there).

    helm 4 applies server-side by default, and refuses an upgrade or rollback that would change a field another field
    manager set since ("Apply failed with N conflicts"): the spire chart's own hook Job patches its webhook's
    failurePolicy after every install, so without the flag no SPIRE release could be upgraded or rolled back. The
    chart's post-upgrade hook patches the field again. Client-side apply has no such conflicts.
    """
    return [] if client_side else ["--force-conflicts"]
