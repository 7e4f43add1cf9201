"""Exception hierarchy, transient-error classification and the bridge between pydantic and `InputError`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import AfterValidator, ValidationError
from pydantic_core import PydanticCustomError

from meshid.redact import redact


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


class WaitTimeout(MeshidError):
    """A wait for a cluster condition ran out of time; never transient (the wait already retried)."""

    def __init__(self, waited_for: str, last_seen: str, timeout_s: float) -> None:
        last_seen = redact(last_seen)
        super().__init__(waited_for, last_seen, timeout_s)
        self.waited_for, self.last_seen, self.timeout_s = waited_for, last_seen, timeout_s

    def __str__(self) -> str:
        return f"gave up waiting for {self.waited_for} after {self.timeout_s:g}s; last seen: {self.last_seen}"


# Error text that means "try again": each pattern names where it comes from.
TRANSIENT_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"connection refused",  # Go net dial / Python ECONNREFUSED: API server, webhook or port-forward not up yet
        r"connection reset by peer",  # ECONNRESET from Go and Python sockets: peer restarted mid-request
        r"i/o timeout",  # Go net package dial/read deadline (kubectl, helm)
        r"TLS handshake timeout",  # Go net/http transport
        r"the server is currently unable to handle the request",  # kube-apiserver 503 ServiceUnavailable
        r"etcdserver: request timed out",  # etcd, relayed by kube-apiserver
        r"context deadline exceeded",  # Go context timeout (helm, admission webhook calls)
        r"too many requests",  # HTTP 429 / API Priority and Fairness throttling
        r"no endpoints available for service",  # kube-apiserver proxy: webhook Service has no ready pods yet
        r"unexpected EOF",  # Go io.ErrUnexpectedEOF: API server connection dropped (restart)
        r"http2: server sent GOAWAY",  # Go http2: API server shutting down a connection
        r"(read|connect) timed out",  # urllib3 ReadTimeoutError / ConnectTimeoutError text
        r"failed calling webhook",  # kube-apiserver: an admission webhook is not up yet (SPIRE's fails closed)
        # helm 4's hook watcher when the TTL controller deleted a finished hook Job first (Kong Mesh's hook Jobs set
        # ttlSecondsAfterFinished: 0); helm 3 counted that as done (helm/helm PR #32586), a new attempt usually is
        r"resource Job/\S+ not ready\. status: NotFound",
    )
)

_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})

# (top-level module, class name) of connection errors and timeouts, matched along the MRO so that neither
# urllib3 nor httpx has to be imported here.
_TRANSIENT_TYPES = frozenset(
    {
        ("urllib3", "TimeoutError"),  # connect/read timeouts, NewConnectionError, NameResolutionError
        ("urllib3", "ProtocolError"),  # connection aborted or reset
        ("httpx", "TimeoutException"),
        ("httpx", "NetworkError"),  # ConnectError, ReadError, WriteError, CloseError
        ("httpx", "RemoteProtocolError"),
    }
)


def matches_transient(text: str) -> bool:
    """True if error text (stderr, an API message) matches one of `TRANSIENT_PATTERNS`."""
    return any(p.search(text) for p in TRANSIENT_PATTERNS)


def _http_status(exc: BaseException) -> int | None:
    """HTTP status of a kubernetes ApiException (`.status`) or httpx.HTTPStatusError (`.response.status_code`)."""
    for status in (getattr(exc, "status", None), getattr(getattr(exc, "response", None), "status_code", None)):
        if isinstance(status, int) and 100 <= status <= 599:
            return status
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the call that raised `exc` may succeed."""
    if isinstance(exc, ExternalCallError):
        return exc.transient
    if isinstance(exc, MeshidError):
        return False
    status = _http_status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if any((cls.__module__.partition(".")[0], cls.__name__) in _TRANSIENT_TYPES for cls in type(exc).__mro__):
        return True
    if matches_transient(str(exc)):
        return True
    return exc.__cause__ is not None and is_transient(exc.__cause__)


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
