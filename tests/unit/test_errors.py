"""Tests for meshid.errors: messages, pickling, transient classification, pydantic bridge."""

from __future__ import annotations

import pickle
import re
from typing import Annotated

import httpx
import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from meshid.errors import (
    TRANSIENT_PATTERNS,
    ExternalCallError,
    ExternalTimeout,
    InputError,
    WaitTimeout,
    checked,
    input_error,
    is_transient,
    pydantic_error,
)
from meshid.spiffe import validate_trust_domain


def test_input_error_message_names_field_problem_and_fix():
    exc = InputError("trust_domain", "contains uppercase letters.", "use lowercase")
    assert str(exc) == "trust_domain: contains uppercase letters. Fix: use lowercase"
    assert (exc.field, exc.problem, exc.fix) == ("trust_domain", "contains uppercase letters", "use lowercase")


@pytest.mark.parametrize(
    "exc",
    [
        InputError("f", "p", "x"),
        ExternalCallError("helm upgrade kong-mesh", "boom", transient=True),
        ExternalTimeout("helm upgrade kong-mesh", 600, "still running"),
        WaitTimeout("pods ready", "0/1 ready", 300),
    ],
)
def test_errors_survive_pickling(exc):
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc) and str(clone) == str(exc) and vars(clone) == vars(exc)


def test_external_call_error_redacts_detail():
    exc = ExternalCallError("kubectl apply", "error: Authorization: Bearer abc.def.ghi denied")
    assert "abc.def.ghi" not in str(exc) and "<redacted>" in exc.detail
    assert str(exc).startswith("kubectl apply failed: ")


def test_external_timeout_is_transient_and_says_how_long():
    exc = ExternalTimeout("helm upgrade kong-mesh", 600.0)
    assert exc.transient and exc.timeout_s == 600.0 and is_transient(exc)
    assert str(exc) == "helm upgrade kong-mesh timed out after 600s"


def test_wait_timeout_says_what_how_long_and_last_seen_and_is_not_transient():
    exc = WaitTimeout("MeshIdentity identity-spire Ready=True", "Ready=False reason=Failure", 300)
    assert str(exc) == (
        "gave up waiting for MeshIdentity identity-spire Ready=True after 300s; "
        "last seen: Ready=False reason=Failure"
    )
    assert not is_transient(WaitTimeout("x", "dial tcp: connection refused", 5))


@pytest.mark.parametrize("status,expected", [(429, True), (500, True), (502, True), (503, True), (504, True),
                                             (404, False), (409, False), (422, False), (403, False)])
def test_api_exception_status(status, expected):
    assert is_transient(ApiException(status=status, reason="x")) is expected


def test_api_exception_with_4xx_is_not_rescued_by_its_text():
    assert not is_transient(ApiException(status=400, reason="connection refused"))


def test_httpx_status_error_uses_response_status():
    request = httpx.Request("GET", "http://x")
    err = httpx.HTTPStatusError("bad", request=request, response=httpx.Response(503, request=request))
    assert is_transient(err)
    err = httpx.HTTPStatusError("bad", request=request, response=httpx.Response(404, request=request))
    assert not is_transient(err)


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection"),
        urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."),
        urllib3.exceptions.ProtocolError("Connection aborted."),
        httpx.ConnectError("nope"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed"),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
    ],
)
def test_connection_errors_and_timeouts_are_transient(exc):
    assert is_transient(exc)


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
    ],
)
def test_transient_text(text):
    assert is_transient(RuntimeError(text))


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError('Error from server (NotFound): deployments.apps "kv" not found'),
        RuntimeError("failed pre-install: resource Job/kong-mesh-system/kong-mesh-install-crds not ready. status: "
                     "Failed, message: Job has reached the specified backoff limit"),
        ValueError("bad value"),
        InputError("f", "connection refused", "x"),
        ExternalCallError("helm", "connection refused", transient=False),
        urllib3.exceptions.SSLError("certificate verify failed"),
        httpx.UnsupportedProtocol("ftp"),
    ],
)
def test_not_transient(exc):
    assert not is_transient(exc)


def test_transient_cause_is_followed():
    try:
        try:
            raise ConnectionResetError()
        except ConnectionResetError as inner:
            raise RuntimeError("probe failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_patterns_are_compiled_and_case_insensitive():
    assert all(p.flags & re.IGNORECASE for p in TRANSIENT_PATTERNS)
    assert is_transient(RuntimeError("Dial TCP: CONNECTION REFUSED"))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 1


class _Checked(BaseModel):
    td: Annotated[str, checked(validate_trust_domain)]


def test_input_error_from_validation_keeps_problem_fix_and_names_field():
    with pytest.raises(ValidationError) as info:
        _Checked(td="Bad.Example")
    exc = input_error(info.value)
    assert exc.field == "td" and "uppercase" in exc.problem and exc.fix == "use lowercase: bad.example"


def test_input_error_from_plain_pydantic_errors():
    with pytest.raises(ValidationError) as info:
        _Model(n="many", extra=1)
    exc = input_error(info.value, lambda loc: "X_" + str(loc[0]).upper())
    assert exc.field == "X_N" and "got 'many'" in exc.problem and "other invalid fields: X_EXTRA" in exc.problem


def test_pydantic_error_field_is_appended_to_location():
    class M(BaseModel):
        a: int = 0

        @model_validator(mode="after")
        def _v(self):
            raise pydantic_error("is wrong", "fix it", "a")

    with pytest.raises(ValidationError) as info:
        M()
    assert str(input_error(info.value)) == "a: is wrong. Fix: fix it"
