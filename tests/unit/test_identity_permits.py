"""Whether a MeshTrafficPermission already lets a SPIFFE ID in (preflight MID008), as Kong Mesh evaluates rules."""

from meshid.identity import permits, spiffe_id_matches

WORKLOAD = "spiffe://default.default.mesh.local/ns/kong-mesh-demo/sa/default"


def _mtp(**default) -> dict:
    return {"spec": {"rules": [{"default": default}]}}


def _id(kind: str, value: str) -> dict:
    return {"spiffeID": {"type": kind, "value": value}}


def test_prefix_is_a_plain_string_prefix_and_exact_is_equality():
    assert spiffe_id_matches({"type": "Prefix", "value": "spiffe://default.default.mesh.local/ns/kong-mesh"}, WORKLOAD)
    assert spiffe_id_matches({"type": "Exact", "value": WORKLOAD}, WORKLOAD)
    assert not spiffe_id_matches({"type": "Exact", "value": WORKLOAD + "x"}, WORKLOAD)
    assert not spiffe_id_matches({"type": "Prefix", "value": "spiffe://other.org/"}, WORKLOAD)


def test_an_allow_that_matches_lets_in_unless_a_deny_matches_too():
    prefix = _id("Prefix", "spiffe://default.default.mesh.local/ns/kong-mesh-demo")
    assert permits(_mtp(allow=[prefix]), WORKLOAD)
    assert permits(_mtp(allowWithShadowDeny=[prefix]), WORKLOAD)
    assert not permits(_mtp(allow=[prefix], deny=[_id("Exact", WORKLOAD)]), WORKLOAD)
    assert not permits(_mtp(allow=[_id("Prefix", "spiffe://default.default.mesh.local/ns/other")]), WORKLOAD)


def test_legacy_from_entries_and_empty_specs_let_no_spire_identity_in():
    legacy = {"spec": {"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"},
                                                               "default": {"action": "Allow"}}]}}
    assert not permits(legacy, WORKLOAD)
    assert not permits({"spec": {}}, WORKLOAD)
    assert not permits({}, WORKLOAD)


def test_rules_match_in_order_deny_before_allow_within_a_rule_and_the_first_match_wins():
    # kumahq/kuma 2.12.3 pkg/plugins/policies/meshtrafficpermission/xds/rbac_configurer.go (createMatcher): the
    # matcher list is [rule1.deny, rule1.allow+allowWithShadowDeny, rule2.deny, ...], on no match: deny.
    demo = _id("Prefix", "spiffe://default.default.mesh.local/ns/kong-mesh-demo")
    exact = _id("Exact", WORKLOAD)
    allow_then_deny = {"spec": {"rules": [{"default": {"allow": [demo]}}, {"default": {"deny": [exact]}}]}}
    deny_then_allow = {"spec": {"rules": [{"default": {"deny": [exact]}}, {"default": {"allow": [demo]}}]}}
    assert permits(allow_then_deny, WORKLOAD), "the first rule's allow matches before the second rule's deny"
    assert not permits(deny_then_allow, WORKLOAD)
