"""meshid's exceptions, whether a failed call is worth retrying, and the bridge between pydantic and `InputError`.

Every error meshid raises on purpose is a `MeshidError`:

    MeshidError
    ├── InputError            bad input (parameters, settings, files, contexts): field, problem, fix
    ├── WaitTimeout           a wait for a cluster condition ran out of time (it already rode out transient errors)
    ├── Interrupted           a stop request ended the work (meshid.interrupt)
    └── ExternalCallError     a call out of the process failed: what, detail (redacted), transient
        ├── ExternalTimeout   the call ran past its own timeout (transient)
        └── ApiError          a Kubernetes API request, watch or exec; status: the HTTP status, if an answer came

A foreign exception is mapped once, where it enters, to one of these, and keeps it as `__cause__`, its text
redacted (`caused_by`); each mapping decides `transient` from what it knows there:
- the kubernetes client and urllib3: `meshid.kube.api_error` (the HTTP status; a connection that failed or broke off),
  and an unusable kubeconfig context is an `InputError` (`meshid.kube.Cluster`);
- pods/exec over websocket-client: `meshid.podexec.exec_error` (the status of a refused stream; a failed connection);
- helm, minikube, kind: `meshid.subprocesses.command_failed` (a tool's error text is all it says);
- python-on-whales: `meshid.providers.base.docker_error` (the docker CLI's error text);
- the sandbox: `meshid.providers.sandbox` (the error's type; `sandbox_error` for a run's cluster, `_command` for
  `meshid sandbox ...`);
- an HTTP call through a port-forward (httpx) is an answer, with no status when the transport failed
  (`meshid.probes.Probe.call`); `meshid.envoy_admin` raises a transient error for a missing or 5xx answer.
`is_transient` looks at meshid's own types only: a foreign exception that got past every boundary is a bug, not a
reason to retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import AfterValidator, ValidationError
from pydantic_core import PydanticCustomError

from meshid.redact import redact

E = TypeVar("E", bound=BaseException)

# Answers that say "try again": throttled (429), or a server or gateway that cannot answer now (500, 502-504).
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class MeshidError(Exception):
    """Base of every error meshid raises on purpose."""


class InputError(MeshidError):
    """Bad input (parameters, settings, fleet files, trust domains, templates, contexts): what, why, how to fix."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(field, problem, fix)
        self.field, self.problem, self.fix = field, problem.rstrip("."), fix

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}. Fix: {self.fix}"


class ExternalCallError(MeshidError):
    """A call to helm, the Kubernetes API, HTTP or a subprocess failed; `detail` is redacted."""

    def __init__(self, what: str, detail: str, transient: bool = False) -> None:
        detail = redact(detail)
        super().__init__(what, detail, transient)
        self.what, self.detail, self.transient = what, detail, transient

    def __str__(self) -> str:
        return f"{self.what} failed: {self.detail}"


class ExternalTimeout(ExternalCallError):
    """An external call ran past its own timeout; always transient."""

    def __init__(self, what: str, timeout_s: float, detail: str = "") -> None:
        super().__init__(what, detail, transient=True)
        self.args = (what, timeout_s, self.detail)
        self.timeout_s = timeout_s

    def __str__(self) -> str:
        return f"{self.what} timed out after {self.timeout_s:g}s" + (f": {self.detail}" if self.detail else "")


class ApiError(ExternalCallError):
    """A Kubernetes API request failed; `status` is the HTTP status (None when no answer came)."""

    def __init__(self, what: str, detail: str, transient: bool, status: int | None = None) -> None:
        super().__init__(what, detail, transient)
        self.args = (what, self.detail, transient, status)
        self.status = status


class WaitTimeout(MeshidError):
    """A wait for a cluster condition ran out of time; never transient (the wait already retried)."""

    def __init__(self, waited_for: str, last_seen: str, timeout_s: float) -> None:
        last_seen = redact(last_seen)
        super().__init__(waited_for, last_seen, timeout_s)
        self.waited_for, self.last_seen, self.timeout_s = waited_for, last_seen, timeout_s

    def __str__(self) -> str:
        return f"gave up waiting for {self.waited_for} after {self.timeout_s:g}s; last seen: {self.last_seen}"


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the call that raised `exc` may succeed: only an `ExternalCallError` that says so."""
    return isinstance(exc, ExternalCallError) and exc.transient


def caused_by(error: E, cause: BaseException) -> E:
    """`error` with the foreign exception it maps as its `__cause__` (what `raise error from cause` does), the
    cause's text redacted first: a traceback prints it, and secrets never leave the process."""
    cause.args = tuple(redact(a) if isinstance(a, str) else a for a in cause.args)
    for name, value in vars(cause).items():  # the texts some exceptions build their message from (body, stderr)
        if isinstance(value, str):
            setattr(cause, name, redact(value))
    error.__cause__, error.__suppress_context__ = cause, True
    return error


def pydantic_error(problem: str, fix: str, field: str = "") -> PydanticCustomError:
    """A pydantic error carrying an `InputError`'s problem and fix; `field` is relative to the validated model."""
    return PydanticCustomError("meshid_input", "{problem}", {"problem": problem, "fix": fix, "field": field})


def checked(check: Callable[[Any], Any]) -> AfterValidator:
    """Wrap an `InputError`-raising check as a pydantic validator that keeps its problem and fix."""

    def run(value: Any) -> Any:
        try:
            return check(value)
        except InputError as exc:
            raise pydantic_error(exc.problem, exc.fix) from None

    return AfterValidator(run)


def dotted(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a dotted field path: ("permission", "value") -> "permission.value"."""
    return ".".join(str(part) for part in loc)


def input_error(exc: ValidationError, name: Callable[[tuple[int | str, ...]], str] = dotted) -> InputError:
    """Turn a pydantic ValidationError into one InputError naming the first bad field (`name` maps locations)."""
    names, details = [], []
    for err in exc.errors(include_url=False):
        ctx = err.get("ctx") or {}
        loc = tuple(err["loc"]) + ((ctx["field"],) if ctx.get("field") else ())
        field = name(loc) if loc else "parameters"
        names.append(field)
        if err["type"] == "meshid_input":
            details.append((ctx["problem"], ctx["fix"]))
        elif err["type"] == "missing":
            details.append(("is required", f"provide {field}"))
        elif err["type"] == "extra_forbidden":
            details.append(("is not a known field", f"remove {field} or correct its spelling"))
        else:
            got = redact(repr(err["input"]))[:80]
            details.append((f"{err['msg']} (got {got})", f"give {field} a valid value"))
    problem, fix = details[0]
    if len(names) > 1:
        problem += f" (other invalid fields: {', '.join(names[1:])})"
    return InputError(names[0], problem, fix)
