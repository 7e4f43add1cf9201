"""The emulator's inbound decision (who may call kv), checked without a cluster."""

from __future__ import annotations

import pytest

from sandbox.emulator.policy import Mode, Permission, Proxy, decide, selects

TD = "default.default.mesh.local"
DEMO_ID = f"spiffe://{TD}/ns/kong-mesh-demo/sa/default"
SYSTEM_NS = "kong-mesh-system"


def proxy(app: str, mode: Mode, ns: str = "kong-mesh-demo", spiffe_id: str = DEMO_ID) -> Proxy:
    labels = {"app": app, "k8s.kuma.io/namespace": ns, "kuma.io/mesh": "default"}
    tags = {k: frozenset({v}) for k, v in labels.items()}
    tags["kuma.io/service"] = frozenset({f"{app}_{ns}_svc_5050"})
    ids = {Mode.IDENTITY: (spiffe_id,), Mode.LEGACY: (f"spiffe://default/{app}_{ns}_svc_5050",)}.get(mode, ())
    return Proxy(name=f"{app}-0", namespace=ns, mode=mode, labels=labels, spiffe_ids=ids, tags=tags,
                 services=frozenset({app}))


LEGACY_KV_MTP = Permission.parse({
    "metadata": {"name": "kv", "namespace": "kong-mesh-demo"},
    "spec": {"targetRef": {"kind": "Dataplane", "labels": {"app": "kv"}},
             "from": [{"targetRef": {"kind": "MeshSubset",
                                     "tags": {"app": "demo-app", "k8s.kuma.io/namespace": "kong-mesh-demo"}},
                       "default": {"action": "Allow"}}]},
}, SYSTEM_NS)


def rules_mtp(*, allow: list[tuple[str, str]] = (), deny: list[tuple[str, str]] = (), name: str = "mtp",
              ns: str = "kong-mesh-demo") -> Permission:
    def as_list(pairs):
        return [{"spiffeID": {"type": t, "value": v}} for t, v in pairs]

    return Permission.parse({"metadata": {"name": name, "namespace": ns, "labels": {"kuma.io/mesh": "default"}},
                             "spec": {"rules": [{"default": {"allow": as_list(allow), "deny": as_list(deny)}}]}},
                            SYSTEM_NS)


GUIDE_MTP = rules_mtp(allow=[("Prefix", f"spiffe://{TD}/ns/kong-mesh-demo")])


def test_legacy_mtls_with_the_from_policy_allows_demo_app_before_mesh_identity():
    assert decide(proxy("demo-app", Mode.LEGACY), proxy("kv", Mode.LEGACY), [LEGACY_KV_MTP]).allowed


def test_legacy_mtls_without_any_permission_denies():
    assert not decide(proxy("demo-app", Mode.LEGACY), proxy("kv", Mode.LEGACY), []).allowed


def test_spire_identity_is_denied_by_the_legacy_from_policy_before_the_rules_mtp():
    decision = decide(proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY), [LEGACY_KV_MTP])
    assert not decision.allowed
    assert "no MeshTrafficPermission" in decision.reason


def test_guide_prefix_rule_allows_the_spire_identity():
    assert decide(proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY), [LEGACY_KV_MTP, GUIDE_MTP]).allowed


def test_prefix_is_a_plain_string_prefix_so_a_longer_namespace_also_matches():
    other = proxy("demo-app", Mode.IDENTITY, spiffe_id=f"spiffe://{TD}/ns/kong-mesh-demo-x/sa/default")
    assert decide(other, proxy("kv", Mode.IDENTITY), [GUIDE_MTP]).allowed


def test_prefix_for_another_namespace_denies():
    mtp = rules_mtp(allow=[("Prefix", f"spiffe://{TD}/ns/other")])
    assert not decide(proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY), [mtp]).allowed


def test_exact_with_the_right_id_allows_and_with_another_denies():
    client, server = proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY)
    assert decide(client, server, [rules_mtp(allow=[("Exact", DEMO_ID)])]).allowed
    assert not decide(client, server, [rules_mtp(allow=[("Exact", DEMO_ID + "x")])]).allowed
    assert not decide(client, server, [rules_mtp(allow=[("Exact", DEMO_ID.rsplit("/", 1)[0])])]).allowed


def test_rules_are_matched_in_order_each_rules_deny_before_its_allow_first_match_wins():
    """Kuma 2.12.3 meshtrafficpermission/xds/rbac_configurer.go createMatcher: the matcher list is [rule1 deny,
    rule1 allow (+ allowWithShadowDeny), rule2 deny, ...], first match wins, no match is the default deny; the rules
    of several policies come in core/rules/inbound sort.go order (same kind and role: display name descending)."""
    client, server = proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY)
    deny = rules_mtp(name="a-deny", deny=[("Exact", DEMO_ID)])
    allow = rules_mtp(name="b-allow", allow=[("Prefix", f"spiffe://{TD}/ns/kong-mesh-demo")])
    assert decide(client, server, [deny, allow]).allowed  # b-allow's rule comes first: display name descending
    assert not decide(client, server, [rules_mtp(name="z-deny", deny=[("Exact", DEMO_ID)]), allow]).allowed
    both = Permission.parse({"metadata": {"name": "both", "namespace": "kong-mesh-demo"}, "spec": {"rules": [
        {"default": {"allow": [{"spiffeID": {"type": "Exact", "value": DEMO_ID}}]}},
        {"default": {"deny": [{"spiffeID": {"type": "Exact", "value": DEMO_ID}}]}}]}}, SYSTEM_NS)
    assert decide(client, server, [both]).allowed  # rule 1's allow matches before rule 2's deny
    one = Permission.parse({"metadata": {"name": "one", "namespace": "kong-mesh-demo"}, "spec": {"rules": [
        {"default": {"allow": [{"spiffeID": {"type": "Exact", "value": DEMO_ID}}],
                     "deny": [{"spiffeID": {"type": "Exact", "value": DEMO_ID}}]}}]}}, SYSTEM_NS)
    assert not decide(client, server, [one]).allowed  # within a rule, deny first


def test_mesh_wide_rules_come_before_dataplane_targeted_ones():
    """rules/sort/sort.go: by top-level targetRef kind (api/common/v1alpha1/targetref.go order: Mesh 1, Dataplane 2)."""
    client, server = proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.IDENTITY)
    targeted = Permission.parse({"metadata": {"name": "z", "namespace": "kong-mesh-demo"}, "spec": {
        "targetRef": {"kind": "Dataplane", "labels": {"app": "kv"}},
        "rules": [{"default": {"deny": [{"spiffeID": {"type": "Exact", "value": DEMO_ID}}]}}]}}, SYSTEM_NS)
    assert decide(client, server, [targeted, rules_mtp(name="a", allow=[("Exact", DEMO_ID)])]).allowed


def test_a_rules_mtp_disables_from_policies_for_legacy_clients():
    """Pods not restarted keep the mesh CA certificate: the from policy worked, the rules MTP does not match."""
    decision = decide(proxy("demo-app", Mode.LEGACY), proxy("kv", Mode.LEGACY), [LEGACY_KV_MTP, GUIDE_MTP])
    assert not decision.allowed


def test_pending_svid_means_no_certificate_and_no_traffic():
    assert not decide(proxy("demo-app", Mode.PENDING), proxy("kv", Mode.IDENTITY), [GUIDE_MTP]).allowed
    assert not decide(proxy("demo-app", Mode.IDENTITY), proxy("kv", Mode.PENDING), [GUIDE_MTP]).allowed


@pytest.mark.parametrize("client_mode,server_mode", [(Mode.LEGACY, Mode.IDENTITY), (Mode.IDENTITY, Mode.LEGACY),
                                                     (Mode.PLAINTEXT, Mode.IDENTITY), (Mode.PLAINTEXT, Mode.LEGACY)])
def test_certificates_of_different_kinds_do_not_trust_each_other(client_mode, server_mode):
    allow_all = Permission.parse({"metadata": {"name": "all", "namespace": SYSTEM_NS},
                                  "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}},
                                 SYSTEM_NS)
    assert not decide(proxy("demo-app", client_mode), proxy("kv", server_mode), [allow_all, GUIDE_MTP]).allowed


def test_plaintext_server_does_not_enforce_permissions():
    assert decide(proxy("demo-app", Mode.PLAINTEXT), proxy("kv", Mode.PLAINTEXT), []).allowed


def test_a_namespaced_policy_only_selects_proxies_of_its_namespace():
    assert selects(GUIDE_MTP, proxy("kv", Mode.IDENTITY))
    assert not selects(GUIDE_MTP, proxy("kv", Mode.IDENTITY, ns="elsewhere"))
    system_wide = rules_mtp(ns=SYSTEM_NS, allow=[("Prefix", "spiffe://x")])
    assert selects(system_wide, proxy("kv", Mode.IDENTITY, ns="elsewhere"))


def test_dataplane_target_selects_by_labels():
    assert selects(LEGACY_KV_MTP, proxy("kv", Mode.LEGACY))
    assert not selects(LEGACY_KV_MTP, proxy("demo-app", Mode.LEGACY))


def test_more_specific_from_entry_wins():
    deny_mesh = Permission.parse({"metadata": {"name": "a", "namespace": "kong-mesh-demo"},
                                  "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}}]}},
                                 SYSTEM_NS)
    assert decide(proxy("demo-app", Mode.LEGACY), proxy("kv", Mode.LEGACY), [deny_mesh, LEGACY_KV_MTP]).allowed
    assert not decide(proxy("other", Mode.LEGACY), proxy("kv", Mode.LEGACY), [deny_mesh, LEGACY_KV_MTP]).allowed
