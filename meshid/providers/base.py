"""What every provider shares: the cluster handle, the `Provider` interface, provider CLIs and Docker calls."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from meshid.errors import ExternalCallError, ExternalTimeout, InputError, caused_by
from meshid.models import ProviderName, Target
from meshid.redact import redact
from meshid.settings import MeshidSettings
from meshid.subprocesses import run_cli, transient_output

if TYPE_CHECKING:
    from python_on_whales import DockerClient

log = logging.getLogger(__name__)

Check = tuple[bool, str]
T = TypeVar("T")

GRACE_S = 30  # a CLI's subprocess timeout exceeds its own --wait by this much
VERSION_TIMEOUT_S = 15
DOCKER_TIMEOUT_S = 20


@dataclass(frozen=True)
class ClusterHandle:
    """A cluster a run works on: how to reach it, and whether the provider created it (cleanup deletes it)."""

    target: str
    provider: ProviderName
    cluster: str
    kubeconfig: Path
    context: str | None
    chart_mirror: str | None
    owned: bool


class Provider(ABC):
    """Where a target's cluster comes from: read-only checks, start, delete."""

    name: ClassVar[ProviderName]

    def __init__(self, target: Target, settings: MeshidSettings, workdir: Path) -> None:
        self.target, self.settings, self.workdir = target, settings, workdir

    @property
    def cluster(self) -> str:
        """The sandbox, profile or cluster name."""
        return self.target.resolved_cluster

    @property
    def cluster_field(self) -> str:
        """The parameter the cluster name comes from, for error messages."""
        return "target.cluster" if self.target.cluster else "target.name"

    def handle(self, kubeconfig: Path, context: str | None, chart_mirror: str | None = None,
               owned: bool = True) -> ClusterHandle:
        """A handle on this provider's cluster."""
        return ClusterHandle(self.target.name, self.name, self.cluster, kubeconfig, context, chart_mirror, owned)

    @abstractmethod
    def preflight(self) -> list[Check]:
        """Read-only checks (tools present, Docker engine reachable, inputs valid): (ok, message) each."""

    @abstractmethod
    def start(self, timeout_s: float, creating: Callable[[], None] = lambda: None) -> ClusterHandle:
        """Make the cluster available (the `cluster-start` stage) and return its handle; a provider that creates
        the cluster calls `creating` once it knows the name is free, before it creates anything."""

    @abstractmethod
    def delete(self, handle: ClusterHandle, timeout_s: float) -> None:
        """Delete a cluster this provider created; never one it did not."""


def binary_check(binary: str, version_args: list[str]) -> Check:
    """Whether `binary` is on PATH and answers `binary VERSION_ARGS`."""
    path = shutil.which(binary)
    if path is None:
        return False, f"{binary} not found on PATH: install {binary} or add it to PATH"
    try:
        version = run_cli([path, *version_args], f"{binary} version", VERSION_TIMEOUT_S).strip()
    except ExternalCallError as exc:
        return False, f"{binary} at {path} does not work: {exc}"
    return True, f"{binary} {version} at {path}"


def docker_call(call: Callable[[DockerClient], T], what: str, timeout_s: float = DOCKER_TIMEOUT_S) -> T:
    """Run a python-on-whales call, waiting at most `timeout_s`; raise ExternalCallError / ExternalTimeout with
    the docker CLI's stderr (`docker_error`). python-on-whales has no timeout, so a daemon thread runs the call and is
    abandoned (not killed) when it hangs."""
    from python_on_whales import DockerClient

    answer: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def work() -> None:
        try:
            answer.put((True, call(DockerClient())))
        except Exception as exc:  # handed to the caller's thread
            answer.put((False, exc))

    threading.Thread(target=work, name=f"docker: {what}", daemon=True).start()
    try:
        ok, value = answer.get(timeout=timeout_s)
    except queue.Empty:
        raise ExternalTimeout(what, timeout_s, "the Docker engine did not answer") from None
    if ok:
        return value
    raise docker_error(what, value) from value


def docker_error(what: str, exc: Exception) -> ExternalCallError:
    """What a python-on-whales call raised as an `ExternalCallError`, the exception its `__cause__`: a failed docker
    command is transient when its stderr says so (`meshid.subprocesses.transient_output`); no docker CLI, or anything
    else, is not."""
    from python_on_whales import ClientNotFoundError, DockerException

    if isinstance(exc, ClientNotFoundError):
        error = ExternalCallError(what, "the docker CLI is not on PATH; install Docker")
    elif isinstance(exc, DockerException):
        err = redact((exc.stderr or "").strip() or f"exit {exc.return_code}")[-2000:]
        error = ExternalCallError(what, err, transient=transient_output(err))
    else:
        error = ExternalCallError(what, f"{type(exc).__name__}: {exc}")
    return caused_by(error, exc)


def docker_engine_check(timeout_s: float = DOCKER_TIMEOUT_S) -> Check:
    """Whether the Docker engine answers `docker info`."""
    try:
        info = docker_call(lambda docker: docker.info(), "docker info", timeout_s)
    except ExternalCallError as exc:
        return False, f"Docker engine not reachable ({exc}): start Docker, or point DOCKER_HOST at a running engine"
    return True, f"Docker engine {info.server_version} reachable ({info.operating_system})"


class DockerClusterProvider(Provider):
    """A cluster whose CLI runs it in Docker containers labelled `LABEL_KEY=<cluster>` (minikube, kind).

    Its kubeconfig is a file in the run's workdir, so the user's ~/.kube/config is never touched.
    """

    binary: ClassVar[str]
    version_args: ClassVar[list[str]]
    label_key: ClassVar[str]

    def __init__(self, target: Target, settings: MeshidSettings, workdir: Path) -> None:
        super().__init__(target, settings, workdir)
        self.kubeconfig = workdir / f"{self.name}-{self.cluster}.kubeconfig"

    @abstractmethod
    def create_argv(self, timeout_s: float) -> list[str]:
        """The command that creates the cluster and waits up to `timeout_s` for it."""

    @abstractmethod
    def delete_argv(self) -> list[str]:
        """The command that deletes the cluster."""

    @abstractmethod
    def context(self) -> str:
        """The kubeconfig context the CLI writes."""

    def cli_env(self) -> dict[str, str]:
        """Environment additions for the CLI."""
        return {}

    def leftover_network(self) -> str | None:
        """A Docker network of this cluster alone that deleting it may leave behind."""
        return None

    def preflight(self) -> list[Check]:
        return [binary_check(self.binary, self.version_args), docker_engine_check()]

    def start(self, timeout_s: float, creating: Callable[[], None] = lambda: None) -> ClusterHandle:
        """Create the cluster; refuse (InputError) when one of that name exists, since cleanup would delete it."""
        if self._containers():
            raise InputError(self.cluster_field, f"a {self.binary} cluster named {self.cluster!r} already exists",
                             f"choose another {self.cluster_field}, delete it (`{' '.join(self.delete_argv())}`), "
                             "or use provider 'context' with its kubeconfig")
        creating()
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_cli(self.create_argv(timeout_s), f"{self.binary} create cluster {self.cluster}", timeout_s + GRACE_S,
                self.cli_env())
        if not self.kubeconfig.is_file():
            raise ExternalCallError(f"{self.binary} create cluster {self.cluster}",
                                    f"it did not write the kubeconfig {self.kubeconfig}")
        self.kubeconfig.chmod(0o600)
        return self.handle(self.kubeconfig, self.context())

    def delete(self, handle: ClusterHandle, timeout_s: float) -> None:
        """Delete the cluster, then remove any container or network of it that survived (even if that failed)."""
        failed: ExternalCallError | None = None
        try:
            run_cli(self.delete_argv(), f"{self.binary} delete cluster {self.cluster}", timeout_s, self.cli_env())
        except ExternalCallError as exc:
            failed = exc
        self._remove_leftovers()
        if failed:
            raise failed

    def _containers(self) -> list[Any]:
        label = f"{self.label_key}={self.cluster}"
        return docker_call(lambda docker: docker.container.list(all=True, filters=[("label", label)]),
                           f"list containers labelled {label}")

    def _remove_leftovers(self) -> None:
        containers, network = self._containers(), self.leftover_network()
        if containers:
            docker_call(lambda docker: docker.container.remove(containers, force=True, volumes=True),
                        f"remove leftover containers of {self.cluster}")
            log.info("removed %d leftover containers of %s cluster %s", len(containers), self.binary, self.cluster)
        if network and docker_call(lambda docker: docker.network.exists(network), f"inspect network {network}"):
            docker_call(lambda docker: docker.network.remove(network), f"remove network {network}")
            log.info("removed leftover network %s", network)
