"""SPIRE as the spire chart installs it: every name derived from the release and its namespace, as upstream does.

From spiffe/helm-charts-hardened (spire 0.30.0): each component subchart names its objects with
`<component>.fullname`, which is the release name itself when it already contains the component's name, else
`<release>-<component>` (charts/spire/charts/spire-server/templates/_helpers.tpl, and the same helper in the agent,
CSI driver and OIDC subcharts, whose names the umbrella chart overrides to `server`, `agent`, ...). The controller
manager's class, its ClusterSPIFFEIDs and its webhook are prefixed with the release namespace
(`spire-server.controller-manager-class-name`, controller-manager-cluster-ids.yaml, controller-manager-webhook.yaml).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshid.errors import ExternalCallError

if TYPE_CHECKING:
    from meshid.kube import Cluster

CSI_DRIVER = "csi.spiffe.io"
SERVER_CONTAINER = "spire-server"
DATA_VOLUME = "spire-data"  # the server StatefulSet's volumeClaimTemplates entry
ENTRY_SHOW = ["spire-server", "entry", "show", "-output", "json"]


def fullname(release: str, component: str) -> str:
    """A subchart's `fullname`: the release when it contains the component's name, else `<release>-<component>`."""
    name = release if component in release else f"{release}-{component}"
    return name[:63].rstrip("-")


@dataclass(frozen=True)
class SpireRelease:
    """One installed spire chart: its namespace and release name, and the names of what it creates."""

    namespace: str
    release: str

    @property
    def server(self) -> str:
        """StatefulSet (and Service) of the SPIRE server."""
        return fullname(self.release, "server")

    @property
    def server_pod(self) -> str:
        """The server's first (only) pod."""
        return f"{self.server}-0"

    @property
    def data_claim(self) -> str:
        """The PersistentVolumeClaim the StatefulSet creates for the server's datastore (it outlives the release)."""
        return f"{DATA_VOLUME}-{self.server_pod}"

    @property
    def agent(self) -> str:
        """DaemonSet of the SPIRE agents."""
        return fullname(self.release, "agent")

    @property
    def csi_driver(self) -> str:
        """DaemonSet of the SPIFFE CSI driver's node plugin."""
        return fullname(self.release, "spiffe-csi-driver")

    @property
    def node_daemonsets(self) -> tuple[str, str]:
        """The DaemonSets that must be ready on every node before injected pods can start."""
        return self.agent, self.csi_driver

    @property
    def controller_class(self) -> str:
        """The controller manager's className (`<namespace>-<release>`); it reconciles only CRs of this class."""
        return f"{self.namespace}-{self.release}"

    def entries(self, cluster: Cluster, timeout_s: float) -> list[Entry]:
        """The registration entries the server holds, read with its own CLI in its pod (what an operator runs with
        `kubectl exec`); ExternalCallError (transient) while the server cannot answer."""
        what = f"spire-server entry show in {self.namespace}/{self.server_pod}"
        result = cluster.exec(self.namespace, self.server_pod, SERVER_CONTAINER, ENTRY_SHOW, timeout_s)
        if result.exit_code != 0:
            detail = (result.stderr.strip() or result.message or f"exit {result.exit_code}")[-500:]
            raise ExternalCallError(what, f"exit {result.exit_code}: {detail}", transient=True)
        try:
            return parse_entries(result.stdout)
        except ValueError:
            raise ExternalCallError(what, f"printed no entry list: {result.stdout[:200]!r}") from None


@dataclass(frozen=True)
class Entry:
    """One registration entry SPIRE's server holds: the SPIFFE ID it issues and the selectors a workload must show."""

    spiffe_id: str
    parent_id: str
    selectors: frozenset[str]


def _spiffe_id(data: dict) -> str:
    return f"spiffe://{data.get('trust_domain', '')}{data.get('path', '')}"


def parse_entries(text: str) -> list[Entry]:
    """Entries from `spire-server entry show -output json`: `{"entries": [{"spiffe_id": {"trust_domain", "path"},
    "parent_id": {...}, "selectors": [{"type", "value"}], ...}], "next_page_token": ""}` (spiffe/spire
    cmd/spire-server/cli/entry/show.go prints the ListEntries response as protojson with proto field names);
    ValueError when it is not that."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("entries", []), list):
        raise ValueError("not an entry list")
    return [Entry(_spiffe_id(e.get("spiffe_id") or {}), _spiffe_id(e.get("parent_id") or {}),
                  frozenset(f"{s.get('type')}:{s.get('value')}" for s in e.get("selectors") or []))
            for e in data.get("entries") or []]
