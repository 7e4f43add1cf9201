"""Tests for meshid.errors: messages, pickling, transient classification (meshid types only), causes, pydantic bridge."""

from __future__ import annotations

import pickle
import traceback
from typing import Annotated

import httpx
import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from meshid.errors import (
    ApiError,
    ExternalCallError,
    ExternalTimeout,
    InputError,
    WaitTimeout,
    caused_by,
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
        ApiError("get Pod demo/a", "HTTP 503: busy", True, 503),
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


@pytest.mark.parametrize("transient", [True, False])
def test_is_transient_is_what_an_external_call_error_says(transient):
    assert is_transient(ExternalCallError("helm", "connection refused", transient=transient)) is transient
    assert is_transient(ApiError("get Pod demo/a", "HTTP 503: busy", transient, 503)) is transient


@pytest.mark.parametrize(
    "exc",
    [
        ApiException(status=503, reason="Service Unavailable"),
        httpx.HTTPStatusError("bad", request=httpx.Request("GET", "http://x"),
                              response=httpx.Response(503, request=httpx.Request("GET", "http://x"))),
        httpx.ConnectError("nope"),
        httpx.ReadTimeout("slow"),
        urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection"),
        urllib3.exceptions.ProtocolError("Connection aborted."),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        RuntimeError("dial tcp 10.96.0.1:443: connect: connection refused"),
        InputError("f", "connection refused", "x"),
        WaitTimeout("x", "dial tcp: connection refused", 5),
    ],
)
def test_only_meshid_types_are_transient_a_foreign_exception_never(exc):
    assert not is_transient(exc)


def test_a_transient_cause_does_not_make_its_wrapper_transient():
    outer = RuntimeError("probe failed")
    outer.__cause__ = ExternalCallError("GET /stats", "HTTP 503", transient=True)
    assert not is_transient(outer)


def test_caused_by_keeps_the_foreign_exception_with_its_text_redacted():
    cause = ApiException(status=401, reason="Authorization: Bearer abc.def.ghi")
    cause.body = '{"message": "token: s3cr3t-value"}'
    error = caused_by(ExternalCallError("get Pod demo/a", "HTTP 401"), cause)
    assert error.__cause__ is cause and error.__suppress_context__
    shown = "".join(traceback.format_exception(error))
    assert "abc.def.ghi" not in shown and "s3cr3t-value" not in shown and "ApiException" in shown


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
