"""The emulator's pure pieces: templates, admission checks, injection, SPIRE reconciliation, hook commands."""

from __future__ import annotations

import pytest

from sandbox.emulator import hooks, injector, spire, validation
from sandbox.emulator import store as st
from sandbox.emulator.kuma import ControlPlane, rendered_spiffe_id
from sandbox.emulator.templates import TemplateError, check, render

TD = "default.default.mesh.local"
CONF = spire.SpireConfig(namespace="spire", trust_domain=TD, class_name="spire-spire", watch_classless=False,
                         ignore_namespaces=("kube-system", "kube-public"), cluster_name="example-cluster")
GUIDE_TEMPLATE = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"


NODES = {"node-0": {"metadata": {"name": "node-0", "uid": "node-0-uid"}, "spec": {}}}


def pod(name: str, ns: str = "kong-mesh-demo", labels: dict | None = None, annotations: dict | None = None) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}",
                         "labels": labels if labels is not None else {"app": name, "kuma.io/mesh": "default"},
                         "annotations": annotations or {}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "node-0", "containers": [{"name": "app", "image": "kuma-counter-demo"}]}}


def namespace(name: str, labels: dict | None = None) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}}}


def csid(name: str, *, class_name: str | None = None, fallback: bool = False, pod_selector: dict | None = None,
         namespace_selector: dict | None = None, workload: list[str] | None = None, created: str = "1") -> dict:
    spec: dict = {"spiffeIDTemplate": GUIDE_TEMPLATE}
    for key, value in (("className", class_name), ("fallback", fallback), ("podSelector", pod_selector),
                       ("namespaceSelector", namespace_selector), ("workloadSelectorTemplates", workload)):
        if value:
            spec[key] = value
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": spec}


NAMESPACES = [namespace("kong-mesh-demo", {"kuma.io/sidecar-injection": "enabled"}), namespace("kube-system"),
              namespace("spire")]
PODS = [pod("demo-app"), pod("kv")]
DEFAULT = csid("spire-spire-default", class_name="spire-spire", fallback=True, namespace_selector={
    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["spire"]}]})
GUIDE = csid("spire-registration", pod_selector={"matchLabels": {"kuma.io/mesh": "default"}},
             workload=["k8s:ns:kong-mesh-demo"], created="2")


# templates
def test_templates_render_fields_labels_and_index():
    data = {"PodMeta": {"Namespace": "ns", "Labels": {"a": "b"}}}
    assert render("x/{{ .PodMeta.Namespace }}/{{index .PodMeta.Labels \"a\"}}", data) == "x/ns/b"
    assert render('{{ label "app" }}', {}, {"label": lambda k: {"app": "kv"}[k]}) == "kv"
    assert render("a {{- .X -}} b", {"X": "1"}) == "a1b"


@pytest.mark.parametrize("broken", ["{{ .Mesh", "{{ }}", "{{ nope 1 }}"])
def test_broken_templates_do_not_parse(broken):
    with pytest.raises(TemplateError):
        check(broken)


def test_unknown_fields_parse_but_fail_to_render():
    check("{{ .Nope }}")
    with pytest.raises(TemplateError):
        render("{{ .Nope }}", {})


# admission
def test_mesh_identity_is_system_namespace_only():
    denied = validation.namespace_check("MeshIdentity", "kong-mesh-demo", "kong-mesh-system")
    assert denied["code"] == 403
    assert denied["message"] == ("resource type MeshIdentity can be created only in the system namespace:"
                                 "kong-mesh-system")
    assert validation.namespace_check("MeshIdentity", "kong-mesh-system", "kong-mesh-system") is None
    assert validation.namespace_check("MeshTrafficPermission", "kong-mesh-demo", "kong-mesh-system") is None


def test_mesh_identity_provider_rules_and_the_2_12_path_bug():
    assert validation.mesh_identity({"provider": {"type": "Spire", "spire": {}}}) == []
    assert validation.mesh_identity({"provider": {"type": "Spire"}}) == [
        ("spec.provider.spire", "configuration needs to be defined")]
    assert validation.mesh_identity({"provider": {"type": "Spire", "spire": {}},
                                     "spiffeID": {"path": "/ns/{{ .Namespace"}}) == []  # not caught in 2.12
    fields = [f for f, _ in validation.mesh_identity({"provider": {"type": "Spire", "spire": {}},
                                                      "spiffeID": {"trustDomain": "{{ .Mesh", "path": "/x"}})]
    assert fields == ["spec.spiffeID.trustDomain", "spec.spiffeID.path"]


def test_mesh_identity_provider_texts_are_kumas():
    """kuma 2.12.3 pkg/core/resources/apis/meshidentity/api/v1alpha1/validator.go and its testdata goldens;
    pkg/core/validators: MakeFieldMustBeOneOfErr, MustBeDefined, WhenDefinedHasToBeNonNegative."""
    assert validation.mesh_identity({"provider": {"type": "X"}}) == [
        ("spec.provider.type", '"X" must be one of ["Bundled", "Spire"]')]
    assert validation.mesh_identity({"provider": {"type": "Bundled", "bundled": {}}}) == [
        ("spec.provider.bundled.ca", "must be defined")]
    assert validation.mesh_identity({"provider": {"type": "Bundled", "bundled": {
        "meshTrustCreation": "Test", "autogenerate": {"enabled": True}, "ca": {}}}}) == [
        ("spec.provider.bundled.meshTrustCreation", '"Test" must be one of ["Enabled", "Disabled"]'),
        ("spec.provider.bundled.ca", "shouldn't be defined once using autogenerated")]
    assert validation.mesh_identity({"provider": {"type": "Bundled", "bundled": {"ca": {
        "certificate": {"type": "File", "file": None}, "privateKey": {"type": "EnvVar", "envVar": {"name": ""}}}}}}) \
        == [("spec.provider.bundled.ca.certificate.file", "must be defined"),
            ("spec.provider.bundled.ca.privateKey.envVar.name", "must be defined")]
    # validateSpire prefixes the agent's path twice in 2.12.3
    assert validation.mesh_identity({"provider": {"type": "Spire", "spire": {"agent": {"timeout": "-1s"}}}}) == [
        ("spec.provider.spire.agent.spire.agent.timeout", "must not be negative when defined")]
    assert validation.mesh_identity({"provider": {"type": "Spire", "spire": {"agent": {"timeout": "0s"}}}}) == []


def test_an_unknown_origin_label_is_kumas_violation_with_kubernetes_cause_keys():
    # webhooks/validation.go validateLabels (labels["kuma.io/origin"]), dataplane_helpers.go ResourceOrigin.IsValid;
    # metav1.StatusCause serializes its type as `reason`
    violations = validation.labels({"labels": {"kuma.io/origin": "x"}})
    assert violations == [('labels["kuma.io/origin"]', 'unknown resource origin "x"')]
    status = validation.invalid(violations, {"kind": "MeshTrafficPermission", "metadata": {"name": "m"}})
    assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "message": 'unknown resource origin "x"',
                                            "field": 'labels["kuma.io/origin"]'}]


def test_spire_templates_have_no_label_function_and_name_themselves_in_errors():
    # spire-controller-manager api/v1alpha1/clusterspiffeid_webhook.go ParseClusterSPIFFEIDSpec: plain text/template
    with_label = validation.cluster_spiffe_id({"spiffeIDTemplate": 'spiffe://{{ .TrustDomain }}/{{ label "app" }}'})
    assert with_label["message"] == ('invalid SPIFFEID template: template: spiffeIDTemplate:1: function "label" not '
                                     'defined')
    selector = validation.cluster_spiffe_id({"spiffeIDTemplate": GUIDE_TEMPLATE,
                                             "workloadSelectorTemplates": ["k8s:ns:{{ .PodMeta.Namespace"]})
    assert selector["message"] == ("invalid workloadSelectorTemplates value: template: workloadSelectorTemplate:1: "
                                   "unclosed action")
    dns = validation.cluster_spiffe_id({"spiffeIDTemplate": GUIDE_TEMPLATE, "dnsNameTemplates": ["{{ }}"]})
    assert dns["message"] == "invalid dnsNameTemplate value: template: dnsNameTemplate:1: missing value for command"


def test_mtp_rules_and_from_are_exclusive_and_spiffe_ids_must_be_valid():
    spec = {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
            "rules": [{"default": {"allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://td/ns/"}}],
                                   "deny": [{"spiffeID": {"type": "Exact", "value": "spiffe://UPPER/x"}}]}}]}
    assert validation.mesh_traffic_permission(spec) == [
        ("spec", "field 'from' must be empty when 'rules' is defined"),
        ("spec.rules[0].allow[0].spiffeID", "must be a valid Spiffe ID"),
        ("spec.rules[0].deny[0].spiffeID", "must be a valid Spiffe ID")]
    assert validation.mesh_traffic_permission({}) == [("spec", "at least one of 'from' or 'rules' has to be defined")]
    status = validation.invalid([("spec", "x"), ("spec.a", "y")], {"kind": "MeshTrafficPermission",
                                                                  "metadata": {"name": "m"}})
    assert status["message"] == "spec: x; spec.a: y" and status["code"] == 422
    assert [c["field"] for c in status["details"]["causes"]] == ["spec", "spec.a"]


def test_cluster_spiffe_id_webhook():
    assert validation.cluster_spiffe_id({"spiffeIDTemplate": GUIDE_TEMPLATE}) is None
    assert validation.cluster_spiffe_id({})["message"] == "empty SPIFFEID template"
    assert validation.cluster_spiffe_id({"spiffeIDTemplate": "{{ .X"})["message"].startswith(
        "invalid SPIFFEID template:")


# injection
CP_OFF = ControlPlane("kong-mesh-system", True, {})
CP_ON = ControlPlane("kong-mesh-system", True, {"KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED": "true"})
DEMO_NS = namespace("kong-mesh-demo", {"kuma.io/sidecar-injection": "enabled"})
SPIRE = "k8s.kuma.io/spire-support"


def injected(p: dict, cp: ControlPlane, ns: dict = DEMO_NS) -> dict:
    out = {k: dict(v) for k, v in p.items()}
    for op in injector.patch(p, ns, cp):
        section, key = op["path"].strip("/").split("/")
        out[section][key] = op["value"]
    return out


def spire_socket(p: dict) -> bool:
    return any(v["name"] == "kuma-spire-agent-socket" for v in p["spec"].get("volumes", []))


def test_injection_adds_sidecar_mesh_label_and_spire_socket_only_when_enabled():
    off, on = injected(pod("kv", labels={"app": "kv"}), CP_OFF), injected(pod("kv", labels={"app": "kv"}), CP_ON)
    assert off["spec"]["containers"][0]["name"] == "kuma-sidecar" and off["metadata"]["labels"]["kuma.io/mesh"]
    assert not spire_socket(off) and spire_socket(on)
    sidecar = on["spec"]["containers"][0]
    assert {"name": "KUMA_DATAPLANE_RUNTIME_SPIRE_SUPPORTED", "value": "true"} in sidecar["env"]
    assert {"mountPath": "/run/spire/sockets", "name": "kuma-spire-agent-socket", "readOnly": True} in \
        sidecar["volumeMounts"]
    assert not any(m["name"] == "kuma-spire-agent-socket" for m in on["spec"]["containers"][1].get("volumeMounts", []))


def test_spire_support_is_an_annotation_and_a_label_does_nothing():
    opt_in = pod("kv", labels={"app": "kv"}, annotations={"k8s.kuma.io/spire-support": "true"})
    assert spire_socket(injected(opt_in, CP_OFF))
    label_only = pod("kv", labels={"app": "kv", "k8s.kuma.io/spire-support": "true"})
    assert not spire_socket(injected(label_only, CP_OFF))


@pytest.mark.parametrize("value,socket", [("true", True), ("yes", True), ("enabled", True), ("false", False),
                                          ("no", False), ("disabled", False)])
def test_spire_support_annotation_values_are_kumas_exact_case_booleans(value, socket):
    # kuma 2.12.3 pkg/plugins/runtime/k8s/metadata/annotations.go GetBooleanWithDefault (supportEnabled)
    cp = CP_OFF if socket else CP_ON
    assert spire_socket(injected(pod("kv", labels={"app": "kv"}, annotations={SPIRE: value}), cp)) is socket


@pytest.mark.parametrize("value", ["True", "YES", "Enabled", "1", "on"])
def test_other_spire_support_values_fail_the_injection_with_kumas_message(value):
    # injector.go: errors.Wrapf(err, "getting %s annotation failed", metadata.KumaSpireSupport)
    with pytest.raises(injector.InjectionError) as failed:
        injector.patch(pod("kv", labels={"app": "kv"}, annotations={SPIRE: value}), DEMO_NS, CP_OFF)
    assert str(failed.value) == (f'getting {SPIRE} annotation failed: annotation "{SPIRE}" has wrong value '
                                 f'"{value}"')


def test_sidecar_injection_is_the_pods_label_then_its_namespaces_exact_case():
    # injector/precheck.go needToInject: pod labels, then namespace labels, with GetEnabled
    assert injector.wants_sidecar(pod("kv", labels={"kuma.io/sidecar-injection": "disabled"}), DEMO_NS) is False
    assert injector.wants_sidecar(pod("kv", labels={"app": "kv"}), namespace("x", {"kuma.io/sidecar-injection": "yes"}))
    annotated = pod("kv", labels={"app": "kv"}, annotations={"kuma.io/sidecar-injection": "disabled"})
    assert injector.wants_sidecar(annotated, DEMO_NS)  # an annotation does not opt out
    with pytest.raises(injector.InjectionError, match='annotation "kuma.io/sidecar-injection" has wrong value '
                                                      '"Enabled"'):
        injector.wants_sidecar(pod("kv"), namespace("x", {"kuma.io/sidecar-injection": "Enabled"}))


def test_no_injection_outside_injected_namespaces_or_twice():
    assert injector.patch(pod("kv"), namespace("other"), CP_ON) == []
    once = injected(pod("kv", labels={"app": "kv"}), CP_ON)
    assert injector.patch(once, DEMO_NS, CP_ON) == []


# SPIRE
def test_classless_cluster_spiffe_id_is_ignored_and_the_fallback_covers_the_pods():
    result = spire.reconcile(CONF, [DEFAULT, GUIDE], NAMESPACES, PODS, NODES)
    assert "spire-registration" not in result.stats
    assert result.stats["spire-spire-default"] == {
        "namespacesSelected": 2, "namespacesIgnored": 1, "podsSelected": 2, "podEntryRenderFailures": 0,
        "entriesMasked": 0, "entriesToSet": 2, "entryFailures": 0}
    assert {e.spiffe_id for es in result.entries.values() for e in es} == {f"spiffe://{TD}/ns/kong-mesh-demo/sa/default"}


def test_with_the_class_name_the_guide_cluster_spiffe_id_takes_over_from_the_fallback():
    guide = csid("spire-registration", class_name="spire-spire",
                 pod_selector={"matchLabels": {"kuma.io/mesh": "default"}}, workload=["k8s:ns:kong-mesh-demo"])
    result = spire.reconcile(CONF, [DEFAULT, guide], NAMESPACES, PODS, NODES)
    assert result.stats["spire-registration"]["entriesToSet"] == 2
    assert result.stats["spire-registration"]["podsSelected"] == 2
    assert result.stats["spire-spire-default"]["entriesToSet"] == 0  # fallback: skipped for covered pods
    assert spire.svids(result.entries["uid-kong-mesh-demo-kv"], PODS[1]) == {
        f"spiffe://{TD}/ns/kong-mesh-demo/sa/default"}


def test_watch_classless_reconciles_classless_ones():
    conf = spire.SpireConfig(**{**CONF.__dict__, "watch_classless": True})
    assert "spire-registration" in spire.reconcile(conf, [GUIDE], NAMESPACES, PODS, NODES).stats


def test_identical_entries_mask_each_other_oldest_wins():
    a = csid("a", class_name="spire-spire", created="1")
    b = csid("b", class_name="spire-spire", created="2")
    stats = spire.reconcile(CONF, [b, a], NAMESPACES, PODS, NODES).stats
    assert (stats["a"]["entriesToSet"], stats["a"]["entriesMasked"]) == (2, 0)
    assert (stats["b"]["entriesToSet"], stats["b"]["entriesMasked"]) == (0, 2)


def test_spiffe_id_outside_spire_trust_domain_is_a_render_failure():
    other = csid("other", class_name="spire-spire")
    other["spec"]["spiffeIDTemplate"] = "spiffe://elsewhere.org/ns/{{ .PodMeta.Namespace }}"
    assert spire.reconcile(CONF, [other], NAMESPACES, PODS, NODES).stats["other"]["podEntryRenderFailures"] == 2


def test_a_pod_entry_has_the_pod_uid_selector_and_the_parent_rendered_from_the_node_uid():
    # spire-controller-manager pkg/spireentry/entries.go renderPodEntry; the spire chart's parentIDTemplate
    # (spire-server controller-manager-configmap.yaml) ends in {{ .NodeMeta.UID }}
    result = spire.reconcile(CONF, [DEFAULT], NAMESPACES, PODS, NODES)
    entry = result.entries["uid-kong-mesh-demo-kv"][0]
    assert entry.parent_id == f"spiffe://{TD}/spire/agent/k8s_psat/example-cluster/node-0-uid"
    assert entry.selectors == ("k8s:pod-uid:uid-kong-mesh-demo-kv",)


def test_a_pod_not_on_a_known_node_is_a_render_failure():
    pending = pod("pending")
    pending["spec"]["nodeName"] = ""
    stats = spire.reconcile(CONF, [DEFAULT], NAMESPACES, [*PODS, pending], NODES).stats["spire-spire-default"]
    assert (stats["podsSelected"], stats["podEntryRenderFailures"], stats["entriesToSet"]) == (3, 1, 2)


def test_hint_ttl_and_auto_populated_dns_names_come_from_the_cluster_spiffe_id():
    oidc = csid("oidc", class_name="spire-spire")
    oidc["spec"].update({"hint": "oidc", "ttl": "1h30m", "dnsNameTemplates": ["oidc.{{ .TrustDomain }}"],
                         "autoPopulateDNSNames": True})
    svc = {"metadata": {"name": "kv", "namespace": "kong-mesh-demo"}, "spec": {"selector": {"app": "kv"}}}
    entry = spire.reconcile(CONF, [oidc], NAMESPACES, PODS, NODES, [svc]).entries["uid-kong-mesh-demo-kv"][0]
    assert (entry.hint, entry.x509_svid_ttl) == ("oidc", 5400)
    assert entry.dns_names == (f"oidc.{TD}", "kv", "kv.kong-mesh-demo", "kv.kong-mesh-demo.svc",
                               "kv.kong-mesh-demo.svc.cluster.local")


def test_spire_is_found_by_what_its_chart_renders_for_any_release():
    class Store:
        def list(self, kind, namespace=None):
            if kind is st.CONFIGMAPS:
                return [{"metadata": {"name": "sec-controller-manager", "namespace": "sec"},
                         "data": {spire.CONFIG_KEY: "metadata:\n  labels: {app.kubernetes.io/instance: myspire}\n"
                                                     "trustDomain: td\nclassName: sec-myspire\n"
                                                     "validatingWebhookConfigurationName: "
                                                     "sec-myspire-controller-manager-webhook\n"}}]
            labels = [("server", "myspire"), ("server", "other"), ("agent", "myspire")]
            return [{"metadata": {"name": f"{n}-{i}", "namespace": "sec", "labels": {
                "app.kubernetes.io/name": n, "app.kubernetes.io/instance": i}}, "spec": {"nodeName": "node-0"}}
                for n, i in labels]

    conf = spire.config(Store())
    assert (conf.namespace, conf.release, conf.class_name) == ("sec", "myspire", "sec-myspire")
    assert conf.webhook_service == "myspire-controller-manager-webhook"
    assert [p["metadata"]["name"] for p in spire.server_pods(Store(), conf)] == ["server-myspire"]


def test_workload_selectors_gate_the_svid():
    uid = "uid-kong-mesh-demo-kv"
    entry = spire.Entry("x", uid, "spiffe://td/a", "parent", ("k8s:ns:kong-mesh-demo", f"k8s:pod-uid:{uid}"))
    assert spire.svids([entry], pod("kv")) == {"spiffe://td/a"}
    assert spire.svids([entry], pod("kv", ns="elsewhere")) == set()
    assert spire.svids([entry], pod("demo-app")) == set()


def test_kuma_renders_the_spiffe_id_from_the_mesh_identity_templates():
    mid = {"metadata": {"labels": {"kuma.io/mesh": "default"}}, "spec": {}}
    labels = {"k8s.kuma.io/namespace": "ns", "kuma.io/serviceaccount": "sa", "app": "kv"}
    assert rendered_spiffe_id(mid, "default", labels) == "spiffe://default.default.mesh.local/ns/ns/sa/sa"
    mid["spec"]["spiffeID"] = {"trustDomain": "td.{{ .Mesh }}", "path": '/app/{{ label "app" }}'}
    assert rendered_spiffe_id(mid, "default", labels) == "spiffe://td.default/app/kv"


# hooks
def test_hook_job_commands_are_parsed_like_kubectl():
    # the charts' commands: kuma 2.12.3 pre-install-patch-namespace-job.yaml, pre-delete-webhooks.yaml,
    # pre-upgrade-install-crds-job.yaml; spire-0.30.0 spire-server post-install-hook.yaml, OIDC pre-delete-hook.yaml
    ns = hooks.Kubectl.parse(["kubectl", "patch", "namespace", "kms", "--type", "merge", "--patch", '{"a": 1}'])
    assert (ns.verb, ns.words, ns.flags) == ("patch", ("namespace", "kms"), {"--type": "merge", "--patch": '{"a": 1}'})
    vwc = hooks.Kubectl.parse(["patch", "validatingwebhookconfiguration", "w", "--type=strategic", "-p", "{}"])
    assert (vwc.words, vwc.flags) == (("validatingwebhookconfiguration", "w"), {"--type": "strategic", "--patch": "{}"})
    gone = hooks.Kubectl.parse(["kubectl", "delete", "ValidatingWebhookConfiguration", "--ignore-not-found", "w"])
    assert (gone.verb, gone.words, gone.flags) == ("delete", ("ValidatingWebhookConfiguration", "w"),
                                                  {"--ignore-not-found": "true"})
    oidc = hooks.Kubectl.parse(["delete", "-n", "spire", "deployment", "spire-oidc", "--wait"])
    assert (oidc.words, oidc.flags) == (("deployment", "spire-oidc"), {"--namespace": "spire", "--wait": "true"})
    crds = hooks.Kubectl.parse(["apply", "--recursive", "--filename", "/kuma/crds"])
    assert (crds.verb, crds.flags) == ("apply", {"--recursive": "true", "--filename": "/kuma/crds"})
    assert hooks.Kubectl.parse(["kubectl"]) is None


def test_the_kubectl_container_of_a_hook_pod_is_found_by_its_image():
    job_pod = {"spec": {"containers": [{"name": "c", "image": "registry.k8s.io/kubectl:v1.33.4",
                                        "command": ["kubectl", "delete"], "args": ["ns", "x"]}]}}
    assert hooks.command_of(job_pod) == ["kubectl", "delete", "ns", "x"]
    assert hooks.command_of({"spec": {"containers": [{"name": "c", "image": "busybox"}]}}) is None
