"""Foreign exceptions mapped to meshid's where they enter: the type, the transient flag, the cause, no secret."""

from __future__ import annotations

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from python_on_whales import DockerException
from python_on_whales.client_config import ClientNotFoundError
from websocket import WebSocketBadStatusException, WebSocketConnectionClosedException, WebSocketTimeoutException

from meshid.errors import ApiError, ExternalCallError, InputError, is_transient
from meshid.kube import api_error
from meshid.podexec import exec_error
from meshid.providers.base import docker_error
from meshid.providers.sandbox import sandbox_error
from meshid.subprocesses import command_failed
from sandbox.errors import InvalidName, SandboxExists, StartFailed, ToolchainMissing

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtZXNoaWQifQ.c2lnbmF0dXJl"


def _refused() -> urllib3.exceptions.NewConnectionError:
    return urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")


# --- Kubernetes API (kubernetes client, urllib3) ---------------------------------------------------------------


@pytest.mark.parametrize("status,transient", [(429, True), (500, True), (502, True), (503, True), (504, True),
                                              (400, False), (403, False), (404, False), (409, False), (422, False)])
def test_an_api_answer_is_transient_by_its_status(status, transient):
    exc = ApiException(status=status, reason="x")
    exc.body = '{"kind": "Status", "message": "the message"}'
    error = api_error("get Pod demo/a", exc)
    assert type(error) is ApiError and error.status == status and error.transient is transient
    assert str(error) == f"get Pod demo/a failed: HTTP {status}: the message" and error.__cause__ is exc


def test_a_4xx_answer_is_not_rescued_by_its_text():
    assert not api_error("get Pod demo/a", ApiException(status=400, reason="connection refused")).transient


def test_the_clients_tls_failure_is_status_0_and_not_transient():
    error = api_error("read server version", ApiException(status=0, reason="SSLError\ncertificate verify failed"))
    assert error.status is None and not error.transient


@pytest.mark.parametrize(
    "exc",
    [
        _refused(),
        urllib3.exceptions.NameResolutionError("api.example", None, OSError("no such host")),
        urllib3.exceptions.ConnectTimeoutError(None, "connect timed out"),
        urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."),
        urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"),
        urllib3.exceptions.MaxRetryError(None, "/version", _refused()),
        ConnectionResetError(104, "reset"),
        TimeoutError("timed out"),
    ],
)
def test_a_connection_that_failed_broke_off_or_timed_out_is_transient(exc):
    error = api_error("list Pod in demo", exc)
    assert type(error) is ApiError and error.transient and error.status is None and error.__cause__ is exc
    assert str(error).startswith(f"list Pod in demo failed: {type(exc).__name__}: ")


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.SSLError("certificate verify failed"),
        urllib3.exceptions.MaxRetryError(None, "/version", urllib3.exceptions.SSLError("certificate verify failed")),
        urllib3.exceptions.ProxyError("no proxy", OSError("refused")),
        ValueError("bad body"),
    ],
)
def test_tls_proxy_and_other_failures_are_not_transient(exc):
    assert not api_error("list Pod in demo", exc).transient


def test_an_api_error_never_carries_a_token_neither_its_cause():
    exc = ApiException(status=401, reason="Unauthorized")
    exc.body = f"Authorization: Bearer {TOKEN}"
    error = api_error("get Pod demo/a", exc)
    assert TOKEN not in str(error) and TOKEN not in str(error.__cause__)


# --- pods/exec (websocket-client, sockets) ---------------------------------------------------------------------


@pytest.mark.parametrize("status,transient", [(503, True), (429, True), (403, False), (404, False)])
def test_a_refused_exec_stream_is_transient_by_its_status(status, transient):
    exc = WebSocketBadStatusException("Handshake status %d", status, resp_body=b'{"message": "pods \\"a\\" not found"}')
    error = exec_error("exec ls in pod demo/a (container c)", exc)
    assert type(error) is ApiError and error.status == status and error.transient is transient
    assert error.detail == f'HTTP {status}: pods "a" not found' and error.__cause__ is exc


@pytest.mark.parametrize("exc", [ConnectionRefusedError(111, "refused"), WebSocketTimeoutException("timed out"),
                                 WebSocketConnectionClosedException("closed")])
def test_an_exec_connection_that_failed_is_transient(exc):
    error = exec_error("exec ls in pod demo/a (container c)", exc)
    assert type(error) is ApiError and error.transient and error.status is None


# --- command-line tools (helm, minikube, kind) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'Post "https://10.96.0.1:443/x": dial tcp 10.96.0.1:443: connect: connection refused',
        "read tcp 10.0.0.1:5050: i/o timeout",
        "net/http: TLS handshake timeout",
        "Error from server (ServiceUnavailable): the server is currently unable to handle the request",
        "Error from server: etcdserver: request timed out",
        "context deadline exceeded",
        "read: connection reset by peer",
        "Error from server (TooManyRequests): the server has received too many requests",
        'failed calling webhook "vclusterspiffeid.kb.io": no endpoints available for service "spire-x"',
        "Error: failed pre-install: resource Job/kong-mesh-system/kong-mesh-install-crds not ready. status: NotFound,"
        " message: Resource not found",
        "Dial TCP: CONNECTION REFUSED",
    ],
)
def test_a_tool_whose_error_text_says_try_again_failed_transiently(text):
    error = command_failed("helm upgrade --install kong-mesh", 1, text)
    assert type(error) is ExternalCallError and error.transient
    assert str(error) == f"helm upgrade --install kong-mesh failed: exit 1: {text}"


@pytest.mark.parametrize(
    "text",
    [
        'Error from server (NotFound): deployments.apps "kv" not found',
        "failed pre-install: resource Job/kong-mesh-system/kong-mesh-install-crds not ready. status: Failed, "
        "message: Job has reached the specified backoff limit",
        "Error: INSTALLATION FAILED: cannot re-use a name that is still in use",
    ],
)
def test_a_tool_that_failed_for_good_is_not_transient(text):
    assert not command_failed("helm upgrade --install kong-mesh", 1, text).transient


def test_a_tools_error_text_is_redacted_and_cut_to_its_end():
    error = command_failed("helm install", 1, f"token: {TOKEN}\n" + "x" * 3000)
    assert TOKEN not in str(error) and len(error.detail) == len("exit 1: ") + 2000


# --- Docker (python-on-whales) ---------------------------------------------------------------------------------


def test_a_failed_docker_command_is_transient_when_its_stderr_says_so():
    exc = DockerException(["docker", "info"], 1, b"", b"dial unix /var/run/docker.sock: connect: connection refused")
    error = docker_error("docker info", exc)
    assert type(error) is ExternalCallError and error.transient and error.__cause__ is exc
    assert str(error) == "docker info failed: dial unix /var/run/docker.sock: connect: connection refused"
    assert not docker_error("docker info", DockerException(["docker", "info"], 1, b"", b"permission denied")).transient


def test_no_docker_cli_or_anything_else_a_docker_call_raises_is_not_transient():
    missing = docker_error("docker info", ClientNotFoundError())
    assert not missing.transient and "install Docker" in missing.detail
    other = docker_error("docker info", ValueError("cannot parse"))
    assert type(other) is ExternalCallError and not other.transient and other.detail == "ValueError: cannot parse"
    assert not docker_error("docker info", DockerException(["docker", "info"], 1)).transient  # stderr not captured


# --- the sandbox -------------------------------------------------------------------------------------------------


def test_a_bad_or_taken_sandbox_name_is_bad_input_a_failed_start_transient_the_rest_failed_calls():
    bad = sandbox_error("start sandbox x", InvalidName("'X' is not a DNS-1123 label"), "target.cluster", "X")
    taken = sandbox_error("start sandbox x", SandboxExists("sandbox x is up"), "target.cluster", "x")
    assert isinstance(bad, InputError) and isinstance(taken, InputError) and taken.field == "target.cluster"
    assert "meshid sandbox down --name x" in taken.fix
    for exc, transient in ((StartFailed("kube-apiserver exited before it was ready"), True),
                           (ToolchainMissing("no Go toolchain"), False)):
        error = sandbox_error("start sandbox x", exc, "target.cluster", "x")
        assert type(error) is ExternalCallError and is_transient(error) is transient and error.__cause__ is exc
