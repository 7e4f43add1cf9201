"""minikube, as in the guide (`minikube start -p mesh-zone`), on the Docker driver."""

from __future__ import annotations

from meshid.models import ProviderName
from meshid.providers.base import DockerClusterProvider


class MinikubeProvider(DockerClusterProvider):
    """A minikube profile named after the target; its kubeconfig lives in the run's workdir."""

    name = ProviderName.MINIKUBE
    binary = "minikube"
    version_args = ["version", "--short"]
    label_key = "name.minikube.sigs.k8s.io"

    def create_argv(self, timeout_s: float) -> list[str]:
        return ["minikube", "start", "-p", self.cluster, "--driver=docker", "--wait=all",
                f"--wait-timeout={int(timeout_s)}s"]

    def delete_argv(self) -> list[str]:
        return ["minikube", "delete", "-p", self.cluster]

    def context(self) -> str:
        return self.cluster

    def cli_env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def leftover_network(self) -> str | None:
        return self.cluster
