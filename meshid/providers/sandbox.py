"""The local sandbox (`sandbox.lifecycle`): a Kubernetes control plane with fake nodes, a chart repository and
the emulated mesh. Imported lazily, so meshid never needs the sandbox unless this provider is used."""

from __future__ import annotations

from collections.abc import Callable

from meshid import interrupt
from meshid.errors import ExternalCallError, InputError, MeshidError, caused_by
from meshid.models import ProviderName
from meshid.providers.base import Check, ClusterHandle, Provider
from meshid.runrecord import Writer


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
    input (in `field`), the rest failed calls, never transient (a start that failed waited its whole bound, and its
    message names the log that says why)."""
    from sandbox.errors import InvalidName, SandboxExists

    if isinstance(exc, InvalidName):
        error: MeshidError = InputError(field, str(exc), f"give {field} a DNS-1123 label of at most 40 characters")
    elif isinstance(exc, SandboxExists):
        error = InputError(field, str(exc), f"choose another {field}, or stop that sandbox "
                           f"(`meshid sandbox down --name {name}`)")
    else:
        error = ExternalCallError(what, str(exc))
    return caused_by(error, exc)
