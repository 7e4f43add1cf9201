"""Tests for meshid.redact."""

from __future__ import annotations

import json
import threading

import yaml

from meshid.redact import REDACTED, redact, register_secret

KUBECONFIG = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    server: https://127.0.0.1:6443
  name: sandbox
users:
- name: admin
  user:
    client-certificate-data: Q0VSVERBVEE=
    client-key-data: S0VZREFUQQ==
    token: s3cr3t-t0ken
    password: hunter2
"""


def test_kubeconfig_secrets_are_removed_and_structure_kept():
    out = redact(KUBECONFIG)
    secrets = ("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==", "Q0VSVERBVEE=", "S0VZREFUQQ==", "s3cr3t-t0ken", "hunter2")
    assert not [s for s in secrets if s in out]
    user = yaml.safe_load(out)["users"][0]["user"]
    assert user == {k: REDACTED for k in user}
    assert "https://127.0.0.1:6443" in out


def test_json_values_are_replaced_and_json_stays_valid():
    text = json.dumps({"token": 'ab"c', "password": "p w", "name": "kv"})
    assert json.loads(redact(text)) == {"token": REDACTED, "password": REDACTED, "name": "kv"}


def test_bearer_token_and_cli_flag():
    assert redact("Authorization: Bearer abc.DEF-_~+/x==") == f"Authorization: Bearer {REDACTED}"
    assert redact("kubectl --token=abc123 get pods") == f"kubectl --token={REDACTED} get pods"


def test_jwt_anywhere():
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl"
    assert redact(f"sa token {jwt} expired") == f"sa token {REDACTED} expired"


def test_pem_private_key_block_even_when_cut():
    block = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"
    assert redact(f"before\n{block}\nafter") == f"before\n{REDACTED}\nafter"
    assert redact("x -----BEGIN PRIVATE KEY-----\nMIIEvQ") == f"x {REDACTED}"


def test_certificates_and_plain_text_are_kept():
    text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\ntokens: 5\nno secret here"
    assert redact(text) == text


def test_empty_value_does_not_swallow_the_next_line():
    assert redact("password=\nnext line") == "password=\nnext line"


def test_registered_literal_is_redacted_everywhere():
    register_secret("  literal-secret-9876\n")
    assert redact("error: literal-secret-9876 rejected") == f"error: {REDACTED} rejected"


def test_short_literals_are_ignored():
    register_secret("abc")
    assert redact("abc def") == "abc def"


def test_register_is_thread_safe():
    values = [f"concurrent-secret-{i:03d}" for i in range(64)]
    threads = [threading.Thread(target=register_secret, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = redact(" ".join(values))
    assert out == " ".join([REDACTED] * len(values))


def test_a_urls_password_goes_and_the_rest_of_the_url_stays():
    out = redact("PREFECT_API_URL=https://ops:pa55w0rd@prefect.example.org:4200/api, plain http://127.0.0.1:4200/api")
    assert "pa55w0rd" not in out
    assert f"https://ops:{REDACTED}@prefect.example.org:4200/api" in out and "plain http://127.0.0.1:4200/api" in out
