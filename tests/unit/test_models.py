"""Tests for meshid.models: defaults reproduce the guide, validation names the dotted field path."""

from __future__ import annotations

import pytest

from meshid.errors import InputError
from meshid.models import (
    ChartSource,
    Charts,
    CleanupPolicy,
    GuideParams,
    ProviderName,
    RegistrationClass,
    Target,
    parse_params,
)


def _error(data: dict) -> InputError:
    with pytest.raises(InputError) as info:
        parse_params(data)
    return info.value


def test_defaults_reproduce_the_guide():
    p = parse_params({})
    assert p.target.name == "mesh-zone" and p.target.provider is ProviderName.SANDBOX
    assert p.target.resolved_cluster == "mesh-zone"
    assert p.trust_domain == "default.default.mesh.local" == p.resolved_spire_trust_domain
    assert p.identity_path == "/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}"
    assert (p.charts.kong_mesh.repo, p.charts.kong_mesh.chart, p.charts.kong_mesh.version) == (
        "https://kong.github.io/kong-mesh-charts", "kong-mesh", "2.12.3"
    )
    assert (p.charts.spire_crds.chart, p.charts.spire_crds.version) == ("spire-crds", "0.6.0")
    assert (p.charts.spire.chart, p.charts.spire.version) == ("spire", "0.30.0")
    assert p.charts.spire.repo == p.charts.spire_crds.repo == "https://spiffe.github.io/helm-charts-hardened/"
    assert p.charts.mirror is None and p.charts.kubectl_hook_tag == "v1.31.11"
    ns = p.namespaces
    assert (ns.control_plane, ns.demo, ns.spire, ns.spire_release) == (
        "kong-mesh-system", "kong-mesh-demo", "spire", "spire"
    )
    assert p.permission.type == "Prefix"
    guide_prefix = "spiffe://default.default.mesh.local/ns/kong-mesh-demo"
    assert p.permission.resolved_value(p.trust_domain, ns.demo) == guide_prefix
    assert p.registration is RegistrationClass.AS_GUIDE and p.cleanup is CleanupPolicy.ALWAYS
    t = p.timeouts
    assert (t.apply_s, t.wait_s, t.helm_s, t.http_s, t.connectivity_s, t.cleanup_s) == (30, 300, 600, 10, 120, 300)
    assert p.stable_successes == 5
    assert p.consistency_problems() == []


def test_every_field_has_a_description():
    for model in (GuideParams, Target, Charts, ChartSource):
        assert all(f.description for f in model.model_fields.values()), model.__name__


@pytest.mark.parametrize(
    "data,field,problem",
    [
        ({"trust_domain": "Bad.Example"}, "trust_domain", "uppercase"),
        ({"spire_trust_domain": "a..b"}, "spire_trust_domain", "empty label"),
        ({"permission": {"value": "spiffe://td/ns/x/"}}, "permission.value", "ends with '/'"),
        ({"permission": {"type": "Regex"}}, "permission.type", "'Prefix' or 'Exact'"),
        ({"identity_path": "/ns/{{ .Namespce }}"}, "identity_path", "unknown variable .Namespce"),
        ({"identity_path": "ns/{{ .Namespace }}"}, "identity_path", "does not start with '/'"),
        ({"target": {"name": "Mesh_Zone"}}, "target.name", "DNS-1123"),
        ({"namespaces": {"demo": "-demo"}}, "namespaces.demo", "DNS-1123"),
        ({"charts": {"kong_mesh": {"repo": "x", "chart": "kong-mesh", "version": "2.12.3"}}},
         "charts.kong_mesh.repo", "http(s) URL"),
        ({"charts": {"mirror": "ftp://mirror"}}, "charts.mirror", "http(s) URL"),
        ({"charts": {"kubectl_hook_tag": "v1 31"}}, "charts.kubectl_hook_tag", "image tag"),
        ({"timeouts": {"wait_s": 0}}, "timeouts.wait_s", "greater than 0"),
        ({"stable_successes": 51}, "stable_successes", "less than or equal to 50"),
        ({"cleanup": "sometimes"}, "cleanup", "'always', 'on-success' or 'never'"),
        ({"trust_domian": "x.org"}, "trust_domian", "not a known field"),
    ],
)
def test_errors_name_the_dotted_field(data, field, problem):
    exc = _error(data)
    assert exc.field == field and problem in exc.problem, str(exc)


def test_kong_mesh_must_be_2_12_and_says_why():
    exc = _error({"charts": {"kong_mesh": {"repo": "https://kong.github.io/kong-mesh-charts",
                                          "chart": "kong-mesh", "version": "2.14.3"}}})
    assert exc.field == "charts.kong_mesh.version" and "'2.14.3' is not 2.12.x" in exc.problem
    assert "2.14" in exc.fix and "legacy-MTP fallback" in exc.fix and "3.x" in exc.fix


def test_context_provider_needs_a_kubeconfig():
    exc = _error({"target": {"provider": "context"}})
    assert exc.field == "target.kubeconfig" and "kubeconfig_secret_block" in exc.fix
    assert Target(provider="context", kubeconfig="/tmp/kc").kubeconfig is not None
    assert Target(provider="context", kubeconfig_secret_block="prod-kubeconfig").provider is ProviderName.CONTEXT


def test_kubeconfig_sources_are_exclusive():
    exc = _error({"target": {"kubeconfig": "/tmp/kc", "kubeconfig_secret_block": "b"}})
    assert exc.field == "target.kubeconfig_secret_block" and "mutually exclusive" in exc.problem


def test_cluster_defaults_to_name_and_follows_it():
    t = Target(name="zone-a")
    assert t.resolved_cluster == "zone-a"
    assert t.model_copy(update={"name": "zone-b"}).resolved_cluster == "zone-b"
    assert Target(name="zone-a", cluster="profile-1").resolved_cluster == "profile-1"


def test_kong_mesh_patch_versions_are_accepted():
    charts = Charts(kong_mesh={"repo": "https://k", "chart": "kong-mesh", "version": "2.12.14"})
    assert charts.kong_mesh.version == "2.12.14"


def test_consistency_spire_trust_domain_differs():
    problems = parse_params({"spire_trust_domain": "other.org"}).consistency_problems()
    assert len(problems) == 1 and "spire_trust_domain other.org differs" in problems[0]


def test_consistency_permission_in_other_trust_domain():
    problems = parse_params({"permission": {"value": "spiffe://other.org/ns/kong-mesh-demo"}}).consistency_problems()
    assert len(problems) == 1 and "trust domain other.org" in problems[0]


def test_permission_prefix_not_covering_demo_namespace_is_a_gap_not_an_inconsistency():
    p = parse_params({"permission": {"value": "spiffe://default.default.mesh.local/ns/other"}})
    assert p.consistency_problems() == []
    assert "does not match" in p.permission_gap()


def test_permission_gap_exact_match():
    exact = "spiffe://default.default.mesh.local/ns/kong-mesh-demo/sa/default"
    assert parse_params({"permission": {"type": "Exact", "value": exact}}).permission_gap() is None
    assert parse_params({}).permission_gap() is None
    # Exact on the guide's prefix value matches no workload.
    assert "does not match" in parse_params({"permission": {"type": "Exact"}}).permission_gap()


def test_consistency_path_template_differs_from_spire_registration():
    problems = parse_params({"identity_path": "/sa/{{ .ServiceAccount }}"}).consistency_problems()
    assert any("ClusterSPIFFEID template gives" in s for s in problems)


def test_consistency_path_template_using_labels():
    problems = parse_params({"identity_path": '/app/{{ label "app" }}'}).consistency_problems()
    assert len(problems) == 1 and "depends on pod labels" in problems[0]
