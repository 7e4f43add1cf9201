"""The local sandbox (`sandbox.lifecycle`): a Kubernetes control plane with fake nodes, a chart repository and
the emulated mesh.

The one module of meshid that drives the sandbox, as `minikube.py` drives minikube: a run's cluster
(`SandboxProvider`) and the commands of `meshid sandbox ...` (the functions below). It imports `sandbox` lazily, so
meshid never needs the sandbox unless it is used; the sandbox's errors leave it as meshid errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from meshid import interrupt
from meshid.errors import ExternalCallError, InputError, MeshidError, caused_by
from meshid.models import ProviderName
from meshid.providers.base import Check, ClusterHandle, Provider
from meshid.runrecord import Writer

if TYPE_CHECKING:
    from sandbox.lifecycle import SandboxInfo


class SandboxProvider(Provider):
    """A one-node sandbox named after the target; its chart repository is the handle's chart mirror. The sandbox
    names its owner: the run (its id and directory) and the process that started it."""

    name = ProviderName.SANDBOX

    def preflight(self) -> list[Check]:
        from sandbox import binaries

        missing = binaries.missing()
        if missing:
            return [(False, f"sandbox binaries not built yet: {', '.join(missing)} (the start builds them; "
                            "`make sandbox-build` does it ahead)")]
        return [(True, f"sandbox binaries in {binaries.bin_dir()}")]

    def start(self, timeout_s: float, creating: Callable[[], None] = lambda: None) -> ClusterHandle:
        """Start the sandbox; a stop request (`meshid.interrupt`) ends the start, and nothing of it is left."""
        from sandbox import lifecycle
        from sandbox.errors import SandboxError, Stopped

        owner = {"run_id": self.workdir.name, "run_dir": str(self.workdir), **Writer.current().model_dump()}
        try:
            info = lifecycle.up(self.cluster, nodes=1, tick_s=self.settings.sandbox_tick_s, timeout_s=timeout_s,
                                owner=owner, starting=creating, stop=interrupt.requested)
        except Stopped:
            interrupt.check()
            raise
        except SandboxError as exc:
            raise sandbox_error(f"start sandbox {self.cluster}", exc, self.cluster_field, self.cluster) from exc
        return self.handle(info.kubeconfig, None, chart_mirror=info.chart_repo_url)

    def delete(self, handle: ClusterHandle, timeout_s: float) -> None:
        """Stop the sandbox and remove its files (lifecycle bounds each step); a sandbox already gone is fine."""
        from sandbox import lifecycle
        from sandbox.errors import SandboxError, UnknownSandbox

        try:
            lifecycle.down(handle.cluster)
        except UnknownSandbox:
            return
        except SandboxError as exc:
            raise sandbox_error(f"delete sandbox {handle.cluster}", exc, self.cluster_field, handle.cluster) from exc


def sandbox_error(what: str, exc: Exception, field: str, name: str) -> MeshidError:
    """A `sandbox.errors.SandboxError` as a meshid error, the exception its `__cause__`: a bad or taken name is bad
    input (in `field`); a start that failed is transient (the sandbox removed what it started, and a start on fresh
    ports is the remedy when a port it picked was taken meanwhile or its processes were starved on a busy machine);
    the rest are failed calls, never transient (a missing toolchain stays missing)."""
    from sandbox.errors import InvalidName, SandboxExists, StartFailed

    if isinstance(exc, InvalidName):
        error: MeshidError = InputError(field, str(exc), f"give {field} a DNS-1123 label of at most 40 characters")
    elif isinstance(exc, SandboxExists):
        error = InputError(field, str(exc), f"choose another {field}, or stop that sandbox "
                           f"(`meshid sandbox down --name {name}`)")
    else:
        error = ExternalCallError(what, str(exc), transient=isinstance(exc, StartFailed))
    return caused_by(error, exc)


class SandboxRefused(InputError):
    """A `meshid sandbox` command the sandbox refused: a bad, unknown or taken name, a port in use, no toolchain.
    Reads as the sandbox's own message, which already says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__("sandbox", message, "as the message says")
        self.message = message

    def __str__(self) -> str:
        return self.message


class SandboxFailed(ExternalCallError):
    """A `meshid sandbox` command whose sandbox part did not start or answer in time. Reads as the sandbox's own
    message, which names the part and where its log is."""

    def __str__(self) -> str:
        return self.detail


@contextmanager
def _command(what: str) -> Iterator[None]:
    """Run the sandbox's side of a `meshid sandbox` command, its errors raised as meshid errors (a command is not
    retried: its user sees the sandbox's own message)."""
    from sandbox.errors import SandboxError, StartFailed

    try:
        yield
    except StartFailed as exc:
        raise caused_by(SandboxFailed(what, str(exc)), exc) from exc
    except SandboxError as exc:
        raise SandboxRefused(str(exc)) from exc


def up(name: str, nodes: int, api_port: int | None, tick_s: float) -> SandboxInfo:
    """Start the sandbox `name` for a person (no run owns it); returns once its API server and nodes are ready."""
    from sandbox import lifecycle

    with _command(f"start sandbox {name}"):
        return lifecycle.up(name, nodes=nodes, api_port=api_port, tick_s=tick_s)


def down(name: str) -> None:
    """Stop every process of the sandbox `name` and remove its files."""
    from sandbox import lifecycle

    with _command(f"stop sandbox {name}"):
        lifecycle.down(name)


def down_all() -> list[str]:
    """Stop every sandbox on this machine, started or half-started; returns their names."""
    from sandbox import lifecycle

    with _command("stop every sandbox"):
        return lifecycle.down_all()


def kubeconfig(name: str) -> Path:
    """The path of the sandbox's kubeconfig."""
    from sandbox import lifecycle

    with _command(f"find sandbox {name}"):
        return lifecycle.get(name).kubeconfig


def _owned_by(owner: dict | None) -> str:
    """Who started a sandbox (the owner `SandboxProvider.start` wrote): a run whose process still runs, one that is
    gone (the sandbox is orphaned), or a person (`meshid sandbox up`)."""
    if not owner or "pid" not in owner:
        return "-"
    alive = Writer(pid=owner["pid"], start_ticks=owner["start_ticks"]).alive()
    return f"run {owner.get('run_id')} ({'pid ' + str(owner['pid']) if alive else 'gone: orphaned'})"


def status() -> list[dict]:
    """Every sandbox with state on this machine: its record, whether it runs, and who owns it (`owned_by`)."""
    from sandbox import lifecycle

    with _command("list sandboxes"):
        return [{**info.to_json(), "running": info.running(), "owned_by": _owned_by(info.owner)}
                for info in lifecycle.status()]


def set_faults(name: str, knobs: dict[str, object]) -> dict:
    """Merge fault knobs into the emulator's config of the sandbox `name`; returns the config once in force."""
    from sandbox import lifecycle

    with _command(f"set the faults of sandbox {name}"):
        return lifecycle.set_faults(name, **knobs)


def traffic(name: str) -> list[dict]:
    """What the data plane of the sandbox `name` allowed and denied, per client and server workload."""
    from sandbox import lifecycle

    with _command(f"read the traffic of sandbox {name}"):
        return lifecycle.traffic(name)
