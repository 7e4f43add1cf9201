"""The sandbox is as harsh as a real cluster: CSI mounts wait for the SPIFFE CSI driver, SPIRE's registration entries
answer `kubectl exec`, Envoy's admin API counts TLS handshakes, and each fault knob shows as a real cluster shows it.

The world here is installed as meshid installs it (SPIRE socket injection on from Kong Mesh's install, the demo before
SPIRE), driven like a user would with helm, kubectl and HTTP. Every upstream fact a test relies on is stated in it,
with the upstream file it comes from.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from sandbox import lifecycle
from sandbox.rawapi import path as api_path
from sandbox.rawapi import watch
from tests.sandbox.test_emulator_world import (DEMO, MESH, MESH_IDENTITY, SYSTEM, TD, TICK_S, World, _sandbox, counted,
                                               demo_manifest, denied, eventually, rules_mtp, stays)

pytestmark = pytest.mark.sandbox

CSI_DELAY_S = 3.0
# kubernetes v1.36 pkg/volume/util/operationexecutor (GenerateError), pkg/volume/csi/csi_mounter.go, csi_client.go
FAILED_MOUNT = ('MountVolume.SetUp failed for volume "kuma-spire-agent-socket" : kubernetes.io/csi: mounter.SetUpAt '
                'failed to get CSI client: driver name csi.spiffe.io not found in the list of registered CSI drivers')
ENTRY_SHOW = ["spire-server", "entry", "show", "-output", "json"]


class PodLog:
    """Every version of every pod of a namespace the API server sends, with when it arrived."""

    def __init__(self, w: World, namespace: str) -> None:
        from kubernetes import config

        self.seen: list[tuple[float, dict]] = []
        self._api = config.new_client_from_config(config_file=str(w.info.kubeconfig))
        self._namespace, self._stop = namespace, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for event in watch(self._api, api_path("", "v1", "pods", self._namespace), 5):
                if event["type"] != "BOOKMARK":
                    self.seen.append((time.time(), event["object"]))
                if self._stop.is_set():
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._api.close()

    def first_ready(self, app: str) -> float | None:
        """When a pod labelled app=<app> was first seen Ready=True."""
        return next((t for t, pod in self.seen if pod["metadata"].get("labels", {}).get("app") == app and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))),
            None)


def ready_since(pod: dict) -> float:
    """When the pod's Ready condition turned True (seconds since the epoch)."""
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    return calendar.timegm(time.strptime(ready["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ"))


def events_of(w: World, namespace: str, name: str) -> list[dict]:
    return w.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]


def pods_of(w: World, namespace: str, app: str) -> list[dict]:
    return [p for p in w.get("pods", "-n", namespace, "-l", f"app={app}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def entries(w: World, namespace: str = "spire", pod: str = "spire-server-0") -> list[dict]:
    """SPIRE's registration entries through `kubectl exec ... spire-server entry show -output json`."""
    done = w.kubectl("exec", "-n", namespace, pod, "-c", "spire-server", "--", *ENTRY_SHOW, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["entries"]


@contextlib.contextmanager
def admin(w: World, namespace: str, app: str) -> Iterator[str]:
    """`kubectl port-forward pod/<app's pod> :9901`: the base URL of its sidecar's Envoy admin API."""
    pod = pods_of(w, namespace, app)[0]["metadata"]["name"]
    proc = subprocess.Popen(["kubectl", "port-forward", "-n", namespace, f"pod/{pod}", ":9901"], env=w.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        found = re.search(r"127\.0\.0\.1:(\d+)", proc.stdout.readline())
        assert found, "port-forward to 9901 did not start"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stat(url: str, name: str) -> int:
    """One counter through /stats?format=json&filter=<regex>, as Kuma's e2e reads them (admin.GetStats)."""
    found = httpx.get(f"{url}/stats", params={"format": "json", "filter": f"^{re.escape(name)}$"}, timeout=10).json()
    assert len(found["stats"]) == 1, found
    return found["stats"][0]["value"]


def shown(url: str, name: str) -> int:
    """A counter once the admin API lists it: the TLS counters of a new pod's inbound appear when the control
    plane's view of the pod (published on its next tick) gives it mTLS; a busy machine can see the pod first."""
    return eventually(lambda: [stat(url, name)], f"{name} on the admin API")[0]


@pytest.fixture(scope="module")
def harsh(tmp_path_factory) -> Iterator[tuple[World, PodLog]]:
    """Kong Mesh with SPIRE injection on from its install, the demo applied before SPIRE exists, then SPIRE with a
    CSI node plugin that registers CSI_DELAY_S after its pod is ready; the guide's identity and restart after."""
    info = _sandbox("harsh")
    try:
        w = World(info, tmp_path_factory.mktemp("helm"))
        w.helm("repo", "add", "kong-mesh", info.chart_repo_url)
        w.helm("upgrade", "--install", "--create-namespace", "--namespace", SYSTEM, "kong-mesh", "kong-mesh/kong-mesh",
               "--set", "kuma.controlPlane.envVars.KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED=true")
        w.kubectl("wait", "-n", SYSTEM, "--for=condition=ready", "pod", "-l", "app=kong-mesh-control-plane",
                  "--timeout=90s")
        eventually(lambda: w.kubectl("get", "mesh", "default", check=False).returncode == 0, "the default Mesh")
        w.apply(MESH.replace("MODE", "Exclusive"))
        w.faults(csi_driver_delay_s=CSI_DELAY_S)
        pods = PodLog(w, DEMO)
        w.apply(demo_manifest(DEMO))
        eventually(lambda: len(pods_of(w, DEMO, "kv")) == 1 and events_of(w, DEMO, pods_of(w, DEMO, "kv")[0]
                                                                             ["metadata"]["name"]), "kv waiting")
        w.install_spire()
        w.kubectl("wait", "-n", DEMO, "--for=condition=available", "--timeout=60s", "deployment", "--all")
        w.apply(MESH_IDENTITY.replace("NAMESPACE", SYSTEM))
        w.faults(csi_driver_delay_s=0.0)
        yield w, pods
        pods.stop()
    finally:
        lifecycle.down(info.name)


# 1. CSI mounts
def test_pods_with_the_csi_volume_start_only_once_the_csi_driver_registered_on_their_node(harsh):
    """No version of a demo pod was Ready before the driver's pod on its node was ready plus the delay, none showed
    anything but what a kubelet shows while the mount fails, and the kubelet's FailedMount event names the driver."""
    w, pods = harsh
    for app in ("kv", "demo-app"):
        pod = pods_of(w, DEMO, app)[0]
        driver = next(p for p in w.get("pods", "-n", "spire", "-l", "app.kubernetes.io/name=spiffe-csi-driver")["items"]
                      if p["spec"]["nodeName"] == pod["spec"]["nodeName"])
        assert pods.first_ready(app) >= ready_since(driver) + CSI_DELAY_S - 1  # timestamps have 1 s resolution
        waiting = [p for _, p in pods.seen if p["metadata"]["labels"].get("app") == app
                   and p.get("status", {}).get("containerStatuses")
                   and p["status"]["containerStatuses"][0]["state"].get("waiting")]
        assert waiting, "the kubelet's waiting status was written"
        # kubelet_pods.go convertToAPIContainerStatuses: PodInitializing for every container when there are init
        # containers (the injected kuma-init), ContainerCreating otherwise
        for version in waiting:
            assert version["status"]["phase"] == "Pending"
            assert {s["state"]["waiting"]["reason"] for s in version["status"]["containerStatuses"] +
                    version["status"]["initContainerStatuses"]} == {"PodInitializing"}
        mounts = [e for e in events_of(w, DEMO, waiting[0]["metadata"]["name"]) if e["reason"] == "FailedMount"]
        assert mounts and mounts[0]["type"] == "Warning" and mounts[0]["source"]["component"] == "kubelet"
        assert mounts[0]["message"] == FAILED_MOUNT


def test_the_oidc_discovery_provider_mounts_the_csi_volume_too(harsh):
    w, _ = harsh
    oidc = w.get("pods", "-n", "spire", "-l", "app.kubernetes.io/name=spiffe-oidc-discovery-provider")["items"][0]
    # spiffe-oidc-discovery-provider chart deployment.yaml: volume spiffe-workload-api, CSI csi.spiffe.io
    assert {"driver": "csi.spiffe.io", "readOnly": True} in [v.get("csi") for v in oidc["spec"]["volumes"]]
    assert ready_since(oidc) >= min(ready_since(p) for p in w.get(
        "pods", "-n", "spire", "-l", "app.kubernetes.io/name=spiffe-csi-driver")["items"]) + CSI_DELAY_S - 1


def test_csi_driver_absent_keeps_new_pods_creating_and_counts_the_retries(harsh):
    w, _ = harsh
    w.faults(csi_driver_absent=True)
    try:
        w.kubectl("wait", "-n", "spire", "--for=condition=ready=false", "pod", "-l",
                  "app.kubernetes.io/name=spiffe-csi-driver", "--timeout=30s")
        w.kubectl("rollout", "restart", "-n", DEMO, "deployment/kv")
        new = eventually(lambda: [p for p in pods_of(w, DEMO, "kv") if p["status"].get("phase") == "Pending"
                                  and p["spec"].get("nodeName")], "a new kv pod on a node")[0]
        name = new["metadata"]["name"]
        counts = eventually(lambda: [e["count"] for e in events_of(w, DEMO, name) if e["reason"] == "FailedMount"
                                     and e["count"] >= 3], "FailedMount repeated with the kubelet's backoff")
        assert counts
        stays(lambda: w.get("pod", "-n", DEMO, name)["status"]["phase"] == "Pending", "no CSI driver, no start")
    finally:
        w.faults(csi_driver_absent=False)
    w.kubectl("rollout", "status", "-n", DEMO, "deployment/kv", "--timeout=60s")


# 2. storage
def test_the_default_storage_class_binds_spire_data_as_kinds_does(harsh):
    w, _ = harsh
    # kubernetes-sigs/kind pkg/build/nodeimage/const_storage.go: standard, rancher.io/local-path, WaitForFirstConsumer
    sc = w.get("storageclass", "standard")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert (sc["provisioner"], sc["volumeBindingMode"], sc["reclaimPolicy"]) == \
        ("rancher.io/local-path", "WaitForFirstConsumer", "Delete")
    # spire-server chart server-resource.yaml volumeClaimTemplates: spire-data, ReadWriteOnce, 1Gi
    claim = w.get("pvc", "-n", "spire", "spire-data-spire-server-0")
    assert (claim["status"]["phase"], claim["spec"]["accessModes"], claim["status"]["capacity"]["storage"]) == \
        ("Bound", ["ReadWriteOnce"], "1Gi")
    volume = w.get("pv", claim["spec"]["volumeName"])
    server = w.get("pod", "-n", "spire", "spire-server-0")
    assert volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == \
        [server["spec"]["nodeName"]]


# 4. registration entries through exec
def test_entry_show_lists_an_entry_per_demo_pod_with_its_pod_uid_selector(harsh):
    w, _ = harsh
    listed = entries(w)
    nodes = {n["metadata"]["name"]: n["metadata"]["uid"] for n in w.get("nodes")["items"]}
    for app in ("kv", "demo-app"):
        pod = pods_of(w, DEMO, app)[0]
        mine = [e for e in listed if {"type": "k8s", "value": f"pod-uid:{pod['metadata']['uid']}"} in e["selectors"]]
        assert len(mine) == 1
        assert mine[0]["spiffe_id"] == {"trust_domain": TD, "path": f"/ns/{DEMO}/sa/default"}
        # the chart's parentIDTemplate: spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node UID>
        assert mine[0]["parent_id"]["path"] == f"/spire/agent/k8s_psat/example-cluster/{nodes[pod['spec']['nodeName']]}"
        assert mine[0]["hint"] == "default" and mine[0]["id"].startswith("example-cluster.")


def test_entry_show_json_is_one_line_with_sorted_keys_as_the_cli_prints_it(harsh):
    """spire cmd/spire-server/cli/entry/show.go through cliprinter's protojson printer: protojson (proto names, every
    field, int64 as strings) re-marshalled by Go's encoding/json (map keys sorted, compact), a newline."""
    w, _ = harsh
    out = w.kubectl("exec", "-n", "spire", "spire-server-0", "-c", "spire-server", "--", *ENTRY_SHOW).stdout
    assert out.endswith("}\n") and out.count("\n") == 1 and out.startswith('{"entries":[{"admin":false,')
    first = json.loads(out)["entries"][0]
    assert list(first) == sorted(first) and isinstance(first["revision_number"], str)
    assert out.rstrip("\n").endswith(',"next_page_token":""}')


def test_unknown_subcommands_fail_as_the_real_cli_does(harsh):
    w, _ = harsh
    done = w.kubectl("exec", "-n", "spire", "spire-server-0", "-c", "spire-server", "--", "spire-server", "entry",
                     "create", check=False)
    # mitchellh/cli v1.1.5: the usage and the available commands on stderr, exit 127 (kwok v0.8.0 reports the exit
    # status in its own error text, pkg/utils/exec/exec.go)
    assert done.returncode != 0 and "Usage: spire-server [--version] [--help] <command> [<args>]" in done.stderr
    assert "exit status 127" in done.stderr


def test_spire_server_not_ready_fails_the_exec_as_the_cli_fails_to_dial_its_socket(harsh):
    w, _ = harsh
    w.faults(spire_server_not_ready=True)
    try:
        def refused() -> bool:
            done = w.kubectl("exec", "-n", "spire", "spire-server-0", "-c", "spire-server", "--", *ENTRY_SHOW,
                             check=False)
            return done.returncode != 0 and (
                'Error: error fetching entries: rpc error: code = Unavailable desc = connection error: desc = '
                '"transport: Error while dialing: dial unix /tmp/spire-server/private/api.sock: connect: connection '
                'refused"') in done.stderr
        eventually(refused, "the exec failing to reach the server")
    finally:
        w.faults(spire_server_not_ready=False)
    eventually(lambda: entries(w), "entries again")


def test_registration_missing_namespaces_leaves_those_pods_without_entries(harsh):
    w, _ = harsh
    w.faults(registration_missing_namespaces=[DEMO])
    try:
        eventually(lambda: not [e for e in entries(w) if e["spiffe_id"]["path"].startswith(f"/ns/{DEMO}/")],
                   "no entries for the demo namespace")
        assert [e for e in entries(w) if e["spiffe_id"]["path"].startswith("/ns/spire/")]  # the OIDC provider's
    finally:
        w.faults(registration_missing_namespaces=[])
    eventually(lambda: [e for e in entries(w) if e["spiffe_id"]["path"].startswith(f"/ns/{DEMO}/")], "entries back")


def test_an_unscheduled_pod_is_a_render_failure_of_the_fallback_cluster_spiffe_id(harsh):
    w, _ = harsh
    w.kubectl("run", "nowhere", "-n", DEMO, "--image=busybox", "--overrides",
              '{"spec": {"nodeSelector": {"no-such": "node"}}}')
    try:
        eventually(lambda: w.get("clusterspiffeid", "spire-spire-default")["status"]["stats"]
                   ["podEntryRenderFailures"] >= 1, "a render failure for the pod without a node")
    finally:
        w.kubectl("delete", "pod", "nowhere", "-n", DEMO, "--wait=false")


# 5. mTLS evidence
def test_kv_sidecar_counts_one_handshake_per_connection_and_rbac_per_request(harsh):
    w, _ = harsh
    w.kubectl("delete", "meshtrafficpermission", "mtp", "-n", DEMO, "--ignore-not-found")
    w.restart(DEMO, "demo-app", "kv")
    kv = pods_of(w, DEMO, "kv")[0]
    listener, rbac = f"listener.{kv['status']['podIP']}_5050.", "http.localhost_5050.rbac."
    with admin(w, DEMO, "kv") as url:
        assert shown(url, listener + "ssl.handshake") == 0  # counters start at 0 with the pod
        stays(lambda: denied(w.counter(DEMO)), "identity in force, no rules MTP: 403 from kv's RBAC")
        # one pooled connection, its handshake completed: the 403s were answered over it
        assert stat(url, listener + "ssl.handshake") == 1
        assert stat(url, rbac + "denied") >= 3 and stat(url, rbac + "allowed") == 0
        w.apply(rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}"))
        eventually(lambda: counted(w.counter(DEMO)), "the counter after the MTP")
        for _ in range(3):
            assert counted(w.counter(DEMO))
        # the inbound's RBAC changed (an LDS update drains the connection): exactly one more handshake
        assert stat(url, listener + "ssl.handshake") == 2
        assert stat(url, rbac + "allowed") >= 4 and stat(url, listener + "ssl.connection_error") == 0
        text = httpx.post(f"{url}/stats", params={"filter": "ssl.handshake"}, timeout=10).text
        assert text == f"{listener}ssl.handshake: 2\n"  # Envoy's text format, POST as well as GET


def test_mtp_rules_are_matched_in_order_first_match_wins(harsh):
    """kuma 2.12.3 meshtrafficpermission/xds/rbac_configurer.go: [rule1 deny, rule1 allow, rule2 deny, ...]."""
    w, _ = harsh
    demo_id = f"spiffe://{TD}/ns/{DEMO}/sa/default"
    w.apply(f"""apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata: {{name: mtp, namespace: {DEMO}, labels: {{kuma.io/mesh: default}}}}
spec:
  rules:
  - default:
      allow: [{{spiffeID: {{type: Exact, value: '{demo_id}'}}}}]
  - default:
      deny: [{{spiffeID: {{type: Prefix, value: 'spiffe://{TD}/ns/{DEMO}'}}}}]
""")
    eventually(lambda: counted(w.counter(DEMO)), "rule 1's allow matching before rule 2's deny")
    w.apply(rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}"))


# 7. fault knobs that change identity
def test_svid_trust_domain_denies_the_traffic_and_stops_the_handshakes(harsh):
    w, _ = harsh
    w.apply(rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}"))
    eventually(lambda: counted(w.counter(DEMO)), "the counter")
    w.faults(svid_trust_domain="other.example.org")
    try:
        eventually(lambda: denied(w.counter(DEMO)), "SVIDs of another trust domain: no certificate Kuma accepts")
        # SPIRE's entries keep SPIRE's own trust domain: the mismatch is in the SVIDs the agents hand out
        assert {e["spiffe_id"]["trust_domain"] for e in entries(w)} == {TD}
        kv = pods_of(w, DEMO, "kv")[0]
        with admin(w, DEMO, "kv") as url:
            before = shown(url, f"listener.{kv['status']['podIP']}_5050.ssl.handshake")
            stays(lambda: denied(w.counter(DEMO)), "still denied")
            assert stat(url, f"listener.{kv['status']['podIP']}_5050.ssl.handshake") == before
    finally:
        w.faults(svid_trust_domain="")
    eventually(lambda: counted(w.counter(DEMO)), "the counter again")


# 6. validator texts and annotation values, through kubectl
def test_a_negative_spire_agent_timeout_is_rejected_at_kumas_path(harsh):
    w, _ = harsh
    manifest = MESH_IDENTITY.replace("NAMESPACE", SYSTEM).replace("identity-spire", "bad-timeout") \
        .replace("    spire: {}\n", "    spire: {agent: {timeout: -1s}}\n")
    done = w.apply(manifest, check=False)
    # kuma 2.12.3 meshidentity/api/v1alpha1/validator.go validateSpire: the agent's path is prefixed twice
    assert done.returncode != 0
    assert "spec.provider.spire.agent.spire.agent.timeout: must not be negative when defined" in done.stderr


def test_an_unknown_origin_label_is_rejected_with_kumas_text(harsh):
    w, _ = harsh
    manifest = rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}", name="origin").replace(
        "labels: {kuma.io/mesh: default}", 'labels: {kuma.io/mesh: default, kuma.io/origin: "x"}')
    done = w.apply(manifest, check=False)
    assert done.returncode != 0 and 'labels["kuma.io/origin"]: unknown resource origin "x"' in done.stderr


def test_a_workload_selector_template_that_does_not_parse_is_rejected_by_spire(harsh):
    w, _ = harsh
    manifest = """apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: bad-selector}
spec:
  spiffeIDTemplate: 'spiffe://{{ .TrustDomain }}/x'
  workloadSelectorTemplates: ['k8s:ns:{{ label "app" }}']
"""
    done = w.apply(manifest, check=False)
    # spire-controller-manager clusterspiffeid_webhook.go: no template functions beyond Go's
    assert done.returncode != 0 and ('invalid workloadSelectorTemplates value: template: workloadSelectorTemplate:1: '
                                     'function "label" not defined') in done.stderr


def test_spire_support_values_are_exact_case(harsh):
    w, _ = harsh
    done = w.kubectl("run", "wrong-case", "-n", DEMO, "--image=busybox", "--annotations",
                     "k8s.kuma.io/spire-support=True", check=False)
    # kuma 2.12.3 k8s/metadata/annotations.go: true/yes/enabled/false/no/disabled, exact case
    assert done.returncode != 0 and ('getting k8s.kuma.io/spire-support annotation failed: annotation '
                                     '"k8s.kuma.io/spire-support" has wrong value "True"') in done.stderr
    w.kubectl("run", "opted-out", "-n", DEMO, "--image=busybox", "--annotations", "k8s.kuma.io/spire-support=no")
    try:
        pod = w.get("pod", "-n", DEMO, "opted-out")
        assert "kuma-spire-agent-socket" not in {v["name"] for v in pod["spec"]["volumes"]}
    finally:
        w.kubectl("delete", "pod", "opted-out", "-n", DEMO, "--wait=false")


# 3. charts as upstream, for another release name and namespace; hooks; what uninstall leaves
def test_spire_under_another_name_hooks_storage_and_uninstall(tmp_path_factory):
    info = _sandbox("release")
    try:
        w = World(info, tmp_path_factory.mktemp("helm"))
        w.install_kong_mesh()
        # kuma 2.12.3 pre-upgrade-install-crds-job.yaml: kubectl apply of kumactl's CRDs (client-side apply)
        crd = w.get("crd", "meshidentities.kuma.io")
        assert "kubectl.kubernetes.io/last-applied-configuration" in crd["metadata"]["annotations"]
        assert w.get("ns", SYSTEM)["metadata"]["labels"]["kuma.io/sidecar-injection"] == "false"  # patch-ns hook
        w.faults(no_default_storageclass=True)
        eventually(lambda: w.kubectl("get", "storageclass", "standard", check=False).returncode != 0,
                   "the default StorageClass removed")
        repo = info.chart_repo_url + "/"
        w.helm("upgrade", "--install", "--create-namespace", "-n", "sec", "spire-crds", "spire-crds", "--repo", repo)
        w.helm("upgrade", "--install", "-n", "sec", "myspire", "spire", "--repo", repo,
               "--set", "global.spire.tools.kubectl.tag=v1.31.11")
        # spire-server _helpers.tpl: <release>-server (nameOverride server); the claim of its volumeClaimTemplates
        claim = "spire-data-myspire-server-0"
        stays(lambda: w.get("pvc", "-n", "sec", claim)["status"]["phase"] == "Pending", "no class: no volume")
        scheduling = eventually(lambda: [e for e in events_of(w, "sec", "myspire-server-0")
                                         if e["reason"] == "FailedScheduling"], "the scheduler's FailedScheduling")
        assert "pod has unbound immediate PersistentVolumeClaims" in scheduling[0]["message"]
        assert w.get("pod", "-n", "sec", "myspire-server-0")["status"]["phase"] == "Pending"
        w.faults(no_default_storageclass=False)
        w.kubectl("wait", "-n", "sec", "--for=condition=ready", "pod", "--all", "--timeout=60s")
        assert w.get("pvc", "-n", "sec", claim)["spec"]["storageClassName"] == "standard"  # given retroactively
        for kind, name in (("statefulset", "myspire-server"), ("daemonset", "myspire-agent"),
                           ("daemonset", "myspire-spiffe-csi-driver"),
                           ("deployment", "myspire-spiffe-oidc-discovery-provider"),
                           ("service", "myspire-controller-manager-webhook")):
            w.get(kind, "-n", "sec", name)
        webhook_name = "sec-myspire-controller-manager-webhook"  # <ns>-<release>-controller-manager-webhook
        webhook = w.get("validatingwebhookconfiguration", webhook_name)
        assert {h["failurePolicy"] for h in webhook["webhooks"]} == {"Fail"}  # post-install hook
        stats = eventually(lambda: w.get("clusterspiffeid", "sec-myspire-default").get("status", {}).get("stats"),
                           "the fallback ClusterSPIFFEID of class sec-myspire reconciled")
        assert w.get("clusterspiffeid", "sec-myspire-default")["spec"]["className"] == "sec-myspire"
        assert stats["namespacesIgnored"] >= 0 and entries(w, "sec", "myspire-server-0") is not None

        # pre-upgrade sets the webhooks to Ignore, post-upgrade back to Fail (spire-server *-upgrade-hook.yaml)
        seen: list[str] = []
        with watching(w, "validatingwebhookconfigurations", seen,
                      lambda o: o["webhooks"][0]["failurePolicy"] if o["metadata"]["name"] == webhook_name else ""):
            w.helm("upgrade", "-n", "sec", "myspire", "spire", "--repo", repo,
                   "--set", "global.spire.tools.kubectl.tag=v1.31.11")
        policies = [p for p in seen if p]
        assert "Ignore" in policies and policies[-1] == "Fail"

        jobs: list[str] = []
        with watching(w, "jobs", jobs, lambda o: o["metadata"]["name"], namespace="sec"):
            w.helm("uninstall", "-n", "sec", "myspire", "--wait", "--timeout", "60s")
        assert "myspire-spiffe-oidc-discovery-provider-pre-delete" in jobs  # the OIDC provider's pre-delete hook
        # StatefulSet claims outlive the release (no persistentVolumeClaimRetentionPolicy in the chart)
        assert w.get("pvc", "-n", "sec", claim)["status"]["phase"] == "Bound"
        w.helm("uninstall", "-n", "sec", "spire-crds")
        # spire-crds 0.6.0 values.yaml: helm.sh/resource-policy: keep
        assert w.get("crd", "clusterspiffeids.spire.spiffe.io")["metadata"]["annotations"][
            "helm.sh/resource-policy"] == "keep"

        jobs.clear()
        with watching(w, "jobs", jobs, lambda o: o["metadata"]["name"], namespace=SYSTEM):
            w.helm("uninstall", "-n", SYSTEM, "kong-mesh", "--wait", "--timeout", "60s")
        assert "kong-mesh-delete-webhook" in jobs  # kuma 2.12.3 pre-delete-webhooks.yaml
        assert w.kubectl("get", "validatingwebhookconfiguration", "kong-mesh-validating-webhook-configuration",
                         check=False).returncode != 0
    finally:
        lifecycle.down(info.name)


@contextlib.contextmanager
def watching(w: World, plural: str, seen: list, what, namespace: str = "") -> Iterator[None]:
    """Collect `what(object)` of every event of a kind while the block runs."""
    from kubernetes import config

    group = {"validatingwebhookconfigurations": ("admissionregistration.k8s.io", "v1"), "jobs": ("batch", "v1")}
    api = config.new_client_from_config(config_file=str(w.info.kubeconfig))
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            for event in watch(api, api_path(*group[plural], plural, namespace), 2):
                if event["type"] in ("ADDED", "MODIFIED"):
                    seen.append(what(event["object"]))
                if stop.is_set():
                    return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(TICK_S)  # the watch's initial list is in
    try:
        yield
    finally:
        time.sleep(TICK_S)
        stop.set()
        thread.join(timeout=10)
        api.close()
