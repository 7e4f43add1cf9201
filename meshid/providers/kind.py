"""kind: a cluster in Docker containers, its kubeconfig in the run's workdir."""

from __future__ import annotations

from meshid.models import ProviderName
from meshid.providers.base import DockerClusterProvider


class KindProvider(DockerClusterProvider):
    """A kind cluster named after the target (context `kind-<name>`); the shared `kind` network is left alone."""

    name = ProviderName.KIND
    binary = "kind"
    version_args = ["version"]
    label_key = "io.x-k8s.kind.cluster"

    def create_argv(self, timeout_s: float) -> list[str]:
        return ["kind", "create", "cluster", "--name", self.cluster, "--kubeconfig", str(self.kubeconfig),
                "--wait", f"{int(timeout_s)}s"]

    def delete_argv(self) -> list[str]:
        return ["kind", "delete", "cluster", "--name", self.cluster, "--kubeconfig", str(self.kubeconfig)]

    def context(self) -> str:
        return f"kind-{self.cluster}"
