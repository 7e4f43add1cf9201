"""Tests for meshid.spiffe: trust domains, SPIFFE IDs, MeshIdentity and SPIRE templates."""

from __future__ import annotations

import pytest

from meshid.errors import InputError
from meshid.spiffe import (
    DEFAULT_PATH_TEMPLATE,
    DEFAULT_TRUST_DOMAIN,
    DEFAULT_TRUST_DOMAIN_TEMPLATE,
    lint_path_template,
    parse_spiffe_id,
    render_path,
    render_trust_domain,
    spire_template_id,
    validate_spiffe_id,
    validate_trust_domain,
)


@pytest.mark.parametrize("td", ["default.default.mesh.local", "example.org", "a", "x_y-z.0", "a" * 255])
def test_valid_trust_domains(td):
    assert validate_trust_domain(td) == td


@pytest.mark.parametrize(
    "td,problem,fix",
    [
        ("Bad.Example", "uppercase", "use lowercase: bad.example"),
        ("a" * 256, "256 characters", "shorter"),
        ("spiffe://example.org", "scheme", "give the trust domain alone, e.g. example.org"),
        ("example.org.", "starts or ends with '.'", "example.org"),
        (".example.org", "starts or ends with '.'", "example.org"),
        ("example..org", "empty label", "single '.'"),
        ("example.org:8443", "port", "example.org"),
        ("example.org/ns", "path", "example.org"),
        ("exa mple@org", "' ', '@'", "only lowercase letters"),
        ("", "empty", "example.org"),
    ],
)
def test_invalid_trust_domains_name_field_problem_and_fix(td, problem, fix):
    with pytest.raises(InputError) as info:
        validate_trust_domain(td, "fleet[2].trust_domain")
    exc = info.value
    assert exc.field == "fleet[2].trust_domain" and problem in exc.problem and fix in exc.fix
    assert str(exc).startswith("fleet[2].trust_domain: ")


def test_parse_spiffe_id():
    assert parse_spiffe_id("spiffe://td.org/ns/x/sa/default") == ("td.org", "/ns/x/sa/default")
    assert parse_spiffe_id("spiffe://td.org") == ("td.org", "")
    assert validate_spiffe_id("spiffe://td.org/a-b_c.d/E9") == "spiffe://td.org/a-b_c.d/E9"


@pytest.mark.parametrize(
    "value,problem",
    [
        ("spiffe://td/ns/x/", "ends with '/'"),
        ("spiffe://td/ns//x", "empty segment"),
        ("spiffe://td/ns/./x", "'.' segment"),
        ("spiffe://td/ns/../x", "'..' segment"),
        ("spiffe://td/ns/x?y=1", "query or fragment"),
        ("spiffe://td/ns/x#f", "query or fragment"),
        ("spiffe://td/ns/a b", "' '"),
        ("spiffe://TD/ns/x", "uppercase"),
        ("spiffe://td:443/ns/x", "port"),
        ("SPIFFE://td/ns/x", "does not start with spiffe://"),
        ("https://td/ns/x", "does not start with spiffe://"),
        ("spiffe:///ns/x", "empty"),
        ("spiffe://td/" + "a" * 2100, "2048 bytes"),
    ],
)
def test_invalid_spiffe_ids(value, problem):
    with pytest.raises(InputError) as info:
        validate_spiffe_id(value, "permission.value")
    assert info.value.field == "permission.value" and problem in info.value.problem


def test_render_path_default_template():
    assert DEFAULT_PATH_TEMPLATE == "/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}"
    assert render_path(DEFAULT_PATH_TEMPLATE, "kong-mesh-demo", "default", "td.org") == "/ns/kong-mesh-demo/sa/default"


def test_render_path_with_trust_domain_label_and_trim_markers():
    template = '/td/{{.TrustDomain}}/app/{{- label "app" -}}/x'
    assert render_path(template, "ns", "sa", "td.org", {"app": "kv"}) == "/td/td.org/app/kv/x"


def test_render_path_missing_label():
    with pytest.raises(InputError, match='label "kuma.io/zone" is not set'):
        render_path('/z/{{ label "kuma.io/zone" }}', "ns", "sa", "td.org")


def test_render_path_must_start_with_slash():
    with pytest.raises(InputError, match="does not start with '/'"):
        render_path("ns/{{ .Namespace }}", "ns", "sa", "td.org")


def test_lint_names_the_bad_variable_and_lists_allowed_ones():
    with pytest.raises(InputError) as info:
        lint_path_template("/ns/{{ .Namespce }}/sa/{{ .ServiceAccount }}")
    exc = info.value
    assert exc.field == "identity_path"
    assert exc.problem == (
        'unknown variable .Namespce; allowed: .Namespace, .ServiceAccount, .TrustDomain, label "key"'
    )
    assert exc.fix == "did you mean .Namespace?"


def test_lint_rejects_path_variables_in_trust_domain_templates():
    with pytest.raises(InputError, match=r"unknown variable \.Namespace; allowed: \.Mesh, \.Zone"):
        render_trust_domain("{{ .Namespace }}.mesh.local", "default", "default")


@pytest.mark.parametrize(
    "template,problem",
    [
        ("/ns/{{ .Namespace }", "unbalanced braces"),
        ("/ns/{{ .Namespace }}}", "unbalanced braces"),
        ("/ns/.Namespace }}", "unbalanced braces"),
        ("/ns/{ .Namespace }", "unbalanced braces"),
        ("/ns/{{ }}", "empty action"),
        ("/ns/{{}}", "empty action"),
        ('/ns/{{ printf "%s" .Namespace }}', "unsupported action"),
        ("/ns/{{ .Namespace.Name }}", "unknown variable .Namespace.Name"),
        ("/ns/{{ .namespace }}", "unknown variable .namespace"),
    ],
)
def test_lint_rejects(template, problem):
    with pytest.raises(InputError) as info:
        lint_path_template(template)
    assert problem in info.value.problem


def test_lint_accepts_valid_templates():
    for template in (DEFAULT_PATH_TEMPLATE, '/w/{{ label "app" }}', "/static/path", "/{{- .Namespace -}}"):
        assert lint_path_template(template) == template


@pytest.mark.parametrize(
    "template,problem",
    [
        ("ns/{{ .Namespace }}", "does not start with '/'"),
        ("/ns/{{ .Namespace }}/", "ends with '/'"),
        ("/ns//{{ .Namespace }}", "empty segment"),
        ("", "does not start with '/'"),
    ],
)
def test_lint_path_template_checks_the_rendered_shape(template, problem):
    with pytest.raises(InputError) as info:
        lint_path_template(template)
    assert info.value.field == "identity_path" and problem in info.value.problem


def test_lint_path_template_accepts_labels_without_knowing_them():
    assert lint_path_template('/app/{{ label "app" }}') == '/app/{{ label "app" }}'


def test_render_trust_domain():
    assert DEFAULT_TRUST_DOMAIN == "default.default.mesh.local"
    assert render_trust_domain(DEFAULT_TRUST_DOMAIN_TEMPLATE, "prod", "eu-1") == "prod.eu-1.mesh.local"
    with pytest.raises(InputError, match="uppercase"):
        render_trust_domain(DEFAULT_TRUST_DOMAIN_TEMPLATE, "Prod", "eu-1")


def test_spire_template_id_matches_kuma_default_rendering():
    assert spire_template_id("td.org", "kong-mesh-demo", "default") == "spiffe://td.org/ns/kong-mesh-demo/sa/default"
    kuma = "spiffe://td.org" + render_path(DEFAULT_PATH_TEMPLATE, "kong-mesh-demo", "default", "td.org")
    assert spire_template_id("td.org", "kong-mesh-demo", "default") == kuma
