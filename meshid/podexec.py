"""Run a command in a pod's container through the API server (`kubectl exec`), with one deadline for the whole call.

The API server's pods/exec subresource speaks the Kubernetes channel protocol over a websocket (v4.channel.k8s.io:
every frame starts with its channel byte; 1 stdout, 2 stderr, 3 the final Status). The socket is opened here, not with
`kubernetes.stream.stream`, for the same reasons as the port-forward (meshid/portforward.py), and so that connecting
and reading share the call's own timeout. Every way it can fail is an `ApiError` (`exec_error` maps websocket-client's
and the socket's exceptions); a command that ran and exited non-zero is a result.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass

from kubernetes.client import ApiClient
from kubernetes.stream.ws_client import get_websocket_url
from websocket import ABNF, WebSocket, WebSocketBadStatusException, WebSocketException

from meshid.errors import TRANSIENT_STATUSES, ApiError, caused_by

STDOUT, STDERR, STATUS = 1, 2, 3
PROTOCOL = "v4.channel.k8s.io"


@dataclass(frozen=True)
class ExecResult:
    """What the command printed and how it ended (`exit_code` 0 on success)."""

    stdout: str
    stderr: str
    exit_code: int
    message: str = ""


def _ssl_options(api: ApiClient) -> dict:
    conf = api.configuration
    options: dict = {"cert_reqs": ssl.CERT_REQUIRED if conf.verify_ssl else ssl.CERT_NONE}
    if conf.verify_ssl and conf.ssl_ca_cert:
        options["ca_certs"] = conf.ssl_ca_cert
    if conf.cert_file:
        options["certfile"] = conf.cert_file
    if conf.key_file:
        options["keyfile"] = conf.key_file
    if conf.tls_server_name:
        options["server_hostname"] = conf.tls_server_name
    return options


def _status_message(body: bytes | None) -> str:
    """The message of a Status object in a refused handshake's body, or the body itself."""
    text = (body or b"").decode(errors="replace")
    try:
        return str(json.loads(text)["message"])
    except (ValueError, KeyError, TypeError):
        return text.strip()[:300] or "no body"


def exit_status(status: dict) -> tuple[int, str]:
    """The exit code and message of the final Status frame (a non-zero exit is a Failure with reason
    NonZeroExitCode and the code as its ExitCode cause)."""
    if status.get("status") == "Success":
        return 0, ""
    causes = (status.get("details") or {}).get("causes") or []
    code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
    return (int(code) if code and code.isdigit() else 1), str(status.get("message", ""))


def exec_error(what: str, exc: Exception) -> ApiError:
    """websocket-client's or the socket's exception as an `ApiError`, the exception its `__cause__`: a refused stream
    carries the API server's status (transient for 429/5xx); a connection that failed or broke off is transient."""
    if isinstance(exc, WebSocketBadStatusException):  # the API server refused the stream: its Status says why
        status = exc.status_code
        return caused_by(ApiError(what, f"HTTP {status}: {_status_message(exc.resp_body)}", status in TRANSIENT_STATUSES,
                                  status), exc)
    return caused_by(ApiError(what, f"{type(exc).__name__}: {exc}", True), exc)


def run(api: ApiClient, namespace: str, pod: str, container: str, command: list[str], timeout_s: float,
        what: str) -> ExecResult:
    """Run `command` (argv) in `container` of `pod`; raise ApiError (`what` failed) when it cannot run to its end in
    time (transient, unless the API server refused the stream for good)."""
    query = [("container", container), ("stdout", "true"), ("stderr", "true")] + [("command", c) for c in command]
    _, url, headers, _, _ = api.param_serialize("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/exec",
                                                header_params={}, auth_settings=["BearerToken"])
    header = [f"sec-websocket-protocol: {PROTOCOL}"]
    if "authorization" in {k.lower() for k in headers}:
        header.append(f"authorization: {next(v for k, v in headers.items() if k.lower() == 'authorization')}")
    deadline = time.monotonic() + timeout_s
    sock = WebSocket(sslopt=_ssl_options(api))
    try:
        sock.connect(get_websocket_url(url, query), header=header, timeout=timeout_s)
    except (WebSocketException, OSError) as exc:
        raise exec_error(what, exc) from exc
    channels: dict[int, bytes] = {STDOUT: b"", STDERR: b"", STATUS: b""}
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(what, f"no end of the command after {timeout_s:g} s", True)
            sock.settimeout(left)
            try:
                opcode, frame = sock.recv_data_frame(True)
            except (TimeoutError, WebSocketException, OSError) as exc:
                if isinstance(exc, TimeoutError):
                    raise ApiError(what, f"no end of the command after {timeout_s:g} s", True) from None
                break  # the server closed the stream: the status frame came before
            if opcode == ABNF.OPCODE_CLOSE:
                break
            if opcode in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) and frame.data:
                data = frame.data if isinstance(frame.data, bytes) else frame.data.encode()
                if data[0] in channels:
                    channels[data[0]] += data[1:]
    finally:
        sock.close()
    if not channels[STATUS]:
        raise ApiError(what, "the stream ended without the command's exit status", True)
    code, message = exit_status(json.loads(channels[STATUS]))
    return ExecResult(channels[STDOUT].decode(errors="replace"), channels[STDERR].decode(errors="replace"), code,
                      message)
