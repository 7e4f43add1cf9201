"""The emulated Kong Mesh + SPIRE world: each trap of the guide shows the symptom the real systems show.

Every sandbox here is this module's own (the traps change mesh-wide state), driven like a user would: the guide's
helm and kubectl commands, `kubectl port-forward svc/demo-app` and HTTP to the counter API. The emulator ticks every
0.5 s, so anything eventual is awaited for a few seconds, as the guide says ("wait a few seconds and try again").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sandbox import binaries, lifecycle
from tests.conftest import require_private_netns

pytestmark = pytest.mark.sandbox

TD = "default.default.mesh.local"
DEMO = "kong-mesh-demo"
SYSTEM = "kong-mesh-system"
TICK_S = 0.5
EVENTUALLY_S = 20
CMD_TIMEOUT_S = 180
ZONE_ERROR = "failed to retrieve zone"
GUIDE_DIR = Path(__file__).resolve().parents[2] / "sandbox"

CLUSTER_SPIFFE_ID = """apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata:
  name: spire-registration
spec:
  podSelector:
    matchLabels:
      kuma.io/mesh: default
  spiffeIDTemplate: 'spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}'
  workloadSelectorTemplates:
    - 'k8s:ns:kong-mesh-demo'
"""

MESH_IDENTITY = """apiVersion: kuma.io/v1alpha1
kind: MeshIdentity
metadata:
  name: identity-spire
  namespace: NAMESPACE
  labels:
    kuma.io/mesh: default
    kuma.io/origin: zone
spec:
  selector:
    dataplane:
      matchLabels: {}
  spiffeID:
    trustDomain: default.default.mesh.local
    path: '/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}'
  provider:
    type: Spire
    spire: {}
"""

MESH = """apiVersion: kuma.io/v1alpha1
kind: Mesh
metadata:
  name: default
spec:
  meshServices:
    mode: MODE
  mtls:
    backends:
    - name: ca-1
      type: builtin
    enabledBackend: ca-1
"""


def demo_manifest(ns: str, kv_url: str | None = None) -> str:
    """The guide's demo (namespace, Services, demo-app and kv Deployments, legacy MTP) in namespace `ns`."""
    kv_url = kv_url or f"http://kv.{ns}.svc.cluster.local:5050"
    image = ("ghcr.io/kumahq/kuma-counter-demo:latest"
             "@sha256:daf8f5cffa10b576ff845be84e4e3bd5a8a6470c7e66293c5e03a148f08ac148")
    services = "".join(f"""---
apiVersion: v1
kind: Service
metadata: {{name: {svc}, namespace: {ns}}}
spec:
  ports: [{{appProtocol: http, port: 5050, protocol: TCP, targetPort: 5050}}]
  selector: {{app: {app}}}
""" for svc, app in (("demo-app", "demo-app"), ("kv", "kv")))
    deployments = "".join(f"""---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {app}, namespace: {ns}, labels: {{app: {app}, version: v1}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}, version: v1}}}}
    spec:
      containers:
      - name: app
        image: {image}
        env: {env}
        ports: [{{containerPort: 5050, name: http}}]
""" for app, env in (("demo-app", f"[{{name: KV_URL, value: '{kv_url}'}}]"), ("kv", "[]")))
    return f"""apiVersion: v1
kind: Namespace
metadata: {{name: {ns}, labels: {{kuma.io/sidecar-injection: enabled}}}}
{services}{deployments}---
apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata: {{name: kv, namespace: {ns}}}
spec:
  targetRef: {{kind: Dataplane, labels: {{app: kv}}}}
  from:
  - targetRef: {{kind: MeshSubset, tags: {{app: demo-app, k8s.kuma.io/namespace: {ns}}}}}
    default: {{action: Allow}}
"""


def rules_mtp(ns: str, match_type: str, value: str, name: str = "mtp") -> str:
    """A MeshTrafficPermission with one allow rule, like the guide's."""
    return f"""apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata: {{name: {name}, namespace: {ns}, labels: {{kuma.io/mesh: default}}}}
spec:
  rules:
  - default:
      allow:
      - spiffeID: {{type: {match_type}, value: '{value}'}}
"""


class World:
    """A sandbox plus the user's tools (kubectl, helm, port-forward, HTTP), all with timeouts."""

    def __init__(self, info: lifecycle.SandboxInfo, home: Path) -> None:
        self.info = info
        self.env = {**os.environ, "KUBECONFIG": str(info.kubeconfig), "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_CACHE_HOME": str(home / "cache"), "HELM_DATA_HOME": str(home / "data")}
        self.last_restart = 0.0  # kubectl refuses a second rollout restart within the same second

    def run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command against the sandbox; fail with its output when `check` and it fails."""
        done = subprocess.run(argv, input=stdin, env=self.env, capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """kubectl (the system's, as the guide uses it)."""
        return self.run(["kubectl", *args], stdin, check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The sandbox's helm."""
        return self.run([str(binaries.bin_dir() / "helm"), *args], check=check)

    def apply(self, manifest: str, check: bool = True) -> subprocess.CompletedProcess:
        """`echo "..." | kubectl apply -f -`."""
        return self.kubectl("apply", "-f", "-", stdin=manifest, check=check)

    def get(self, *args: str) -> dict:
        """`kubectl get ... -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def install_kong_mesh(self) -> None:
        """Guide step 1."""
        self.helm("repo", "add", "kong-mesh", self.info.chart_repo_url)
        self.helm("upgrade", "--install", "--create-namespace", "--namespace", SYSTEM, "kong-mesh",
                  "kong-mesh/kong-mesh")
        self.kubectl("wait", "-n", SYSTEM, "--for=condition=ready", "pod", "--selector=app=kong-mesh-control-plane",
                     "--timeout=90s")
        # The control plane creates Mesh `default` as it starts; a client-side `kubectl apply` of that Mesh racing
        # the creation fails with AlreadyExists (a CI run saw it), so the world waits for it as a careful user would.
        eventually(lambda: self.kubectl("get", "mesh", "default", check=False).returncode == 0,
                   "the control plane's default Mesh")

    def install_spire(self, trust_domain: str = TD) -> None:
        """Guide steps 3 and 4."""
        repo = self.info.chart_repo_url + "/"
        self.helm("upgrade", "--install", "--create-namespace", "-n", "spire", "spire-crds", "spire-crds",
                  "--repo", repo)
        self.helm("upgrade", "--install", "-n", "spire", "spire", "spire", "--repo", repo,
                  "--set", f"global.spire.trustDomain={trust_domain}",
                  "--set", "global.spire.tools.kubectl.tag=v1.31.11")
        self.kubectl("wait", "-n", "spire", "--for=condition=ready", "pod", "--all", "--timeout=90s")

    def deploy_demo(self, ns: str, kv_url: str | None = None) -> None:
        """The guide's demo configuration in namespace `ns`, waited for."""
        self.apply(demo_manifest(ns, kv_url))
        self.kubectl("wait", "-n", ns, "--for=condition=available", "--timeout=120s", "deployment", "--all")

    def enable_spire_injection(self) -> None:
        """Guide: kubectl set env ... KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED=true, then rollout status."""
        self.kubectl("set", "env", "-n", SYSTEM, "deploy/kong-mesh-control-plane",
                     "KUMA_RUNTIME_KUBERNETES_INJECTOR_SPIRE_ENABLED=true")
        self.kubectl("rollout", "status", "-n", SYSTEM, "deploy/kong-mesh-control-plane", "--timeout=120s")

    def restart(self, ns: str, *deployments: str) -> None:
        """kubectl rollout restart, waiting until the pods are replaced."""
        time.sleep(max(0.0, self.last_restart + 1.1 - time.monotonic()))  # restartedAt has 1 s resolution
        self.kubectl("rollout", "restart", "-n", ns, *(f"deployment/{d}" for d in deployments))
        self.last_restart = time.monotonic()
        for name in deployments:
            self.kubectl("rollout", "status", "-n", ns, f"deployment/{name}", "--timeout=120s")

    @contextlib.contextmanager
    def port_forward(self, ns: str) -> Iterator[str]:
        """`kubectl port-forward svc/demo-app -n NS :5050`; yields the local base URL."""
        proc = subprocess.Popen(["kubectl", "port-forward", "svc/demo-app", "-n", ns, ":5050"], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            line = proc.stdout.readline()
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert found, f"port-forward did not start: {line}{proc.stdout.read() if proc.poll() is not None else ''}"
            yield f"http://127.0.0.1:{found.group(1)}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def counter(self, ns: str, method: str = "POST", headers: dict[str, str] | None = None,
                timeout_s: float = 10) -> httpx.Response:
        """One call of the counter API of `ns`'s demo-app, through a fresh port-forward."""
        with self.port_forward(ns) as url:
            return httpx.request(method, f"{url}/api/counter", headers=headers, timeout=timeout_s)

    def faults(self, **knobs: object) -> None:
        """Set emulator fault knobs of this sandbox."""
        lifecycle.set_faults(self.info.name, **knobs)


def eventually(check: Callable[[], object], what: str, timeout_s: float = EVENTUALLY_S) -> object:
    """Retry `check` until it returns something truthy without raising; fail naming `what` and the last answer."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (AssertionError, ValueError, httpx.HTTPError, subprocess.SubprocessError) as exc:
            last = exc
        time.sleep(TICK_S)
    pytest.fail(f"waited {timeout_s:.0f} s for {what}; last: {last!r}")


def denied(resp: httpx.Response) -> bool:
    """The demo-app's answer when kv refused it: 500 with the real error JSON."""
    body = resp.json()
    return resp.status_code == 500 and body["title"] == ZONE_ERROR and body["status"] == 500 and \
        re.fullmatch(r"[0-9a-f]{32}", body["instance"]) is not None and body["type"].endswith("#INTERNAL-ERROR")


def counted(resp: httpx.Response) -> dict | None:
    """The counter body of a 200, else None."""
    return resp.json() if resp.status_code == 200 else None


def stays(check: Callable[[], bool], what: str, duration_s: float = 4 * TICK_S + 1) -> None:
    """Assert `check` holds on every try for a few ticks (a symptom that does not go away by waiting)."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(TICK_S)


def _sandbox(purpose: str) -> lifecycle.SandboxInfo:
    require_private_netns()
    return lifecycle.up(f"emu-{purpose}-{os.getpid()}", nodes=2, tick_s=TICK_S)


def guide_world(purpose: str, helm_home: Path, trust_domain: str = TD,
                early_namespaces: tuple[str, ...] = ()) -> Iterator[World]:
    """A fresh sandbox with the guide done up to the restart (no rules MTP yet); `early_namespaces` get the demo
    before SPIRE injection is enabled and are never restarted."""
    info = _sandbox(purpose)
    try:
        w = World(info, helm_home)
        w.install_kong_mesh()
        w.apply(MESH.replace("MODE", "Exclusive"))
        for ns in (DEMO, *early_namespaces):
            w.deploy_demo(ns)
        w.install_spire(trust_domain)
        w.enable_spire_injection()
        w.apply(CLUSTER_SPIFFE_ID)
        w.apply(MESH_IDENTITY.replace("NAMESPACE", SYSTEM))
        w.restart(DEMO, "demo-app", "kv")
        yield w
    finally:
        lifecycle.down(info.name)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    """The guide up to the restart, plus `late-ns` deployed before SPIRE injection was enabled."""
    yield from guide_world("guide", tmp_path_factory.mktemp("helm"), early_namespaces=("late-ns",))


def identity_ready(w: World) -> str:
    conditions = w.get("meshidentity", "-n", SYSTEM, "identity-spire").get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "")


def guide_mtp_in_force(w: World) -> None:
    """The guide's MeshTrafficPermission applied (idempotent) and answering with the counter."""
    w.apply(rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}"))
    eventually(lambda: counted(w.counter(DEMO)), "a working counter")


def volumes_of(w: World, ns: str, app: str) -> set[str]:
    pods = w.get("pods", "-n", ns, "-l", f"app={app}")["items"]
    return {v["name"] for p in pods if not p["metadata"].get("deletionTimestamp") for v in p["spec"]["volumes"]}


def test_guide_flow_500_before_the_mtp_then_the_counter(world):
    world.kubectl("delete", "meshtrafficpermission", "mtp", "-n", DEMO, "--ignore-not-found")
    world.restart(DEMO, "kv")  # a fresh counter, whichever test ran before
    eventually(lambda: identity_ready(world) == "True", "MeshIdentity Ready=True")
    assert "kuma-spire-agent-socket" in volumes_of(world, DEMO, "kv")
    stays(lambda: denied(world.counter(DEMO)), "identity in force, no rules MTP: kv denies demo-app")
    world.apply(rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}"))
    assert eventually(lambda: counted(world.counter(DEMO)), "the counter after the MTP") == {"counter": 1, "zone": ""}
    assert [counted(world.counter(DEMO))["counter"] for _ in range(3)] == [2, 3, 4]
    assert counted(world.counter(DEMO, "GET")) == {"counter": 4, "zone": ""}
    assert counted(world.counter(DEMO, "DELETE")) == {"counter": 0, "zone": ""}


def test_a_permission_change_is_in_force_within_seconds_while_statuses_keep_their_tick(world):
    """Kong Mesh regenerates every proxy's configuration each second (kuma-cp.defaults.yaml:
    xdsServer.dataplaneConfigurationRefreshInterval: 1s); its status writes have their own, slower tick. With a 30 s
    status tick, removing and restoring the permission still shows within seconds."""
    guide_mtp_in_force(world)
    world.faults(tick_s=30)
    try:
        started = time.monotonic()
        world.kubectl("delete", "meshtrafficpermission", "mtp", "-n", DEMO)
        eventually(lambda: denied(world.counter(DEMO)), "the denial once the permission is gone", timeout_s=10)
        world.apply(rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}"))
        eventually(lambda: counted(world.counter(DEMO)), "the counter once the permission is back", timeout_s=10)
        assert time.monotonic() - started < 20, "a permission change waited for the status tick"
    finally:
        world.faults(tick_s=TICK_S)


def test_mesh_service_lists_the_spiffe_id_of_kv(world):
    expected = {"type": "SpiffeID", "value": f"spiffe://{TD}/ns/{DEMO}/sa/default"}
    eventually(lambda: expected in world.get("meshservice", "-n", DEMO, "kv")["spec"].get("identities", []),
               "MeshService kv lists kv's SPIFFE ID")


def test_kv_counter_restarts_from_one_when_kv_is_replaced(world):
    guide_mtp_in_force(world)
    world.restart(DEMO, "kv")
    assert eventually(lambda: counted(world.counter(DEMO)), "the counter after kv's restart")["counter"] == 1


def test_demo_app_fault_headers(world):
    guide_mtp_in_force(world)
    assert world.counter(DEMO, headers={"x-set-response-status-code": "418"}).status_code == 418
    failed = world.counter(DEMO, headers={"x-failure-percentage": "100"})
    assert failed.status_code == 500 and "counter" in failed.json()
    started = time.monotonic()
    world.counter(DEMO, "GET", headers={"x-set-response-delay-ms": "700"})
    assert time.monotonic() - started >= 0.7


def test_pods_not_restarted_after_enabling_injection_keep_the_mesh_ca_certificate(world):
    """No socket volume, no identity: the legacy from-MTP still lets them through, a rules MTP does not match."""
    assert "kuma-spire-agent-socket" not in volumes_of(world, "late-ns", "kv")
    eventually(lambda: counted(world.counter("late-ns")), "legacy mTLS + from MTP answering 200 before a rules MTP")
    world.apply(rules_mtp("late-ns", "Prefix", f"spiffe://{TD}/ns/late-ns"))
    eventually(lambda: denied(world.counter("late-ns")), "the rules MTP disabling the from MTP")
    stays(lambda: denied(world.counter("late-ns")), "no identity until the pods are restarted")
    world.restart("late-ns", "demo-app", "kv")
    assert "kuma-spire-agent-socket" in volumes_of(world, "late-ns", "kv")
    eventually(lambda: counted(world.counter("late-ns")), "identity after the restart")


def test_mtp_prefix_for_another_namespace_denies(world):
    world.deploy_demo("prefix-other")
    world.apply(rules_mtp("prefix-other", "Prefix", f"spiffe://{TD}/ns/some-other-namespace"))
    eventually(lambda: denied(world.counter("prefix-other")), "a denial")
    stays(lambda: denied(world.counter("prefix-other")), "the prefix of another namespace never matches")


def test_mtp_exact_with_the_right_spiffe_id_allows(world):
    world.deploy_demo("exact")
    world.apply(rules_mtp("exact", "Exact", f"spiffe://{TD}/ns/exact/sa/default"))
    assert eventually(lambda: counted(world.counter("exact")), "the counter")["counter"] == 1


def test_prefix_is_a_plain_string_prefix_so_a_longer_namespace_matches_too(world):
    """kv in `px` allows the prefix .../ns/px; demo-app in `px-x` (SPIFFE ID .../ns/px-x/...) gets through."""
    world.deploy_demo("px")
    world.apply(rules_mtp("px", "Prefix", f"spiffe://{TD}/ns/px"))
    world.deploy_demo("px-x", kv_url="http://kv.px.svc.cluster.local:5050")
    eventually(lambda: counted(world.counter("px-x")), "px-x's demo-app through px's kv")


def test_mesh_identity_outside_the_system_namespace_is_rejected(world):
    done = world.apply(MESH_IDENTITY.replace("NAMESPACE", DEMO), check=False)
    assert done.returncode != 0
    assert "resource type MeshIdentity can be created only in the system namespace:kong-mesh-system" in done.stderr


def test_mesh_identity_without_spire_provider_config_is_rejected(world):
    manifest = MESH_IDENTITY.replace("NAMESPACE", SYSTEM).replace("identity-spire", "no-config")
    done = world.apply(manifest.replace("    spire: {}\n", ""), check=False)
    assert done.returncode != 0 and "spec.provider.spire: configuration needs to be defined" in done.stderr


def test_mtp_mixing_from_and_rules_or_with_a_bad_spiffe_id_is_rejected(world):
    bad = rules_mtp(DEMO, "Prefix", "spiffe://Upper.Case/ns/x/", name="bad") + \
        "  from:\n  - targetRef: {kind: Mesh}\n    default: {action: Allow}\n"
    done = world.apply(bad, check=False)
    assert done.returncode != 0
    assert "spec: field 'from' must be empty when 'rules' is defined" in done.stderr
    assert "spec.rules[0].allow[0].spiffeID: must be a valid Spiffe ID" in done.stderr


def test_guide_cluster_spiffe_id_is_ignored_until_it_has_the_class_name(world):
    default = eventually(lambda: world.get("clusterspiffeid", "spire-spire-default").get("status", {}).get("stats"),
                         "stats of the chart's fallback ClusterSPIFFEID")
    assert default["entriesToSet"] >= 2
    stays(lambda: not world.get("clusterspiffeid", "spire-registration").get("status"),
          "the guide's ClusterSPIFFEID (no className) has no stats")
    world.kubectl("patch", "clusterspiffeid", "spire-registration", "--type", "merge",
                  "-p", '{"spec": {"className": "spire-spire"}}')
    try:
        stats = eventually(lambda: world.get("clusterspiffeid", "spire-registration").get("status", {}).get("stats"),
                           "stats once className is spire-spire")
        assert stats["podsSelected"] >= 2 and stats["entriesToSet"] >= 2
    finally:
        world.kubectl("patch", "clusterspiffeid", "spire-registration", "--type", "json",
                      "-p", '[{"op": "remove", "path": "/spec/className"}]')


def test_cluster_spiffe_id_is_rejected_while_spire_server_is_not_ready(world):
    world.faults(spire_server_not_ready=True)
    try:
        world.kubectl("wait", "-n", "spire", "--for=condition=ready=false", "pod/spire-server-0", "--timeout=30s")
        done = world.apply(CLUSTER_SPIFFE_ID.replace("spire-registration", "late"), check=False)
        assert done.returncode != 0 and 'failed calling webhook "vclusterspiffeid.kb.io"' in done.stderr
    finally:
        world.faults(spire_server_not_ready=False)
    world.kubectl("wait", "-n", "spire", "--for=condition=ready", "pod/spire-server-0", "--timeout=30s")
    world.apply(CLUSTER_SPIFFE_ID.replace("spire-registration", "late"))
    world.kubectl("delete", "clusterspiffeid", "late")


def test_control_plane_crash_loop_fails_injection_closed(world):
    world.faults(control_plane_crash_loop=True)
    try:
        world.kubectl("wait", "-n", SYSTEM, "--for=condition=ready=false", "pod", "-l", "app=kong-mesh-control-plane",
                      "--timeout=30s")
        restarts = eventually(lambda: world.get("pods", "-n", SYSTEM, "-l", "app=kong-mesh-control-plane")["items"][0]
                              ["status"]["containerStatuses"][0]["restartCount"] >= 2, "rising restart counts")
        assert restarts
        done = world.kubectl("run", "probe", "-n", DEMO, "--image=busybox", "--restart=Never", check=False)
        assert done.returncode != 0 and 'failed calling webhook "namespace-kuma-injector.kuma.io"' in done.stderr
    finally:
        world.faults(control_plane_crash_loop=False)
    world.kubectl("wait", "-n", SYSTEM, "--for=condition=ready", "pod", "-l", "app=kong-mesh-control-plane",
                  "--timeout=30s")


def test_port_forward_drops_and_transient_503s(world):
    guide_mtp_in_force(world)
    world.faults(transient_503_share=1.0)
    try:
        assert world.counter(DEMO).status_code == 503
    finally:
        world.faults(transient_503_share=0.0)
    world.faults(drop_port_forward_share=1.0)
    try:
        with pytest.raises(httpx.HTTPError):  # closed without an answer: the client gets nothing back
            world.counter(DEMO, timeout_s=3)
    finally:
        world.faults(drop_port_forward_share=0.0)
    assert counted(world.counter(DEMO))


def test_convergence_delay_holds_back_permission_changes(world):
    world.deploy_demo("slow")
    world.faults(convergence_delay_s=4.0)
    try:
        world.apply(rules_mtp("slow", "Prefix", f"spiffe://{TD}/ns/slow"))
        started = time.monotonic()
        eventually(lambda: counted(world.counter("slow")), "the delayed permission")
        assert time.monotonic() - started >= 3.5
    finally:
        world.faults(convergence_delay_s=0.0)


def test_mesh_not_exclusive_means_no_identity(world):
    """Last in this module: it turns identity off mesh-wide, then back on."""
    guide_mtp_in_force(world)
    world.apply(MESH.replace("MODE", "Everywhere"))
    try:
        eventually(lambda: identity_ready(world) == "False", "MeshIdentity Ready=False")
        conditions = world.get("meshidentity", "-n", SYSTEM, "identity-spire")["status"]["conditions"]
        assert {"type": "DependenciesReady", "status": "False", "reason": "MeshServicesDisabled"}.items() <= \
            next(c for c in conditions if c["type"] == "DependenciesReady").items()
        eventually(lambda: denied(world.counter(DEMO)), "no identity-based traffic: the rules MTP matches nothing")
    finally:
        world.apply(MESH.replace("MODE", "Exclusive"))
    eventually(lambda: identity_ready(world) == "True", "MeshIdentity Ready=True again")
    eventually(lambda: counted(world.counter(DEMO)), "identity-based traffic again")


@pytest.fixture(scope="module")
def mismatched_world(tmp_path_factory) -> Iterator[World]:
    """The guide with SPIRE installed for another trust domain than the MeshIdentity's."""
    yield from guide_world("td", tmp_path_factory.mktemp("helm"), trust_domain="other.example.org")


def test_spire_trust_domain_differing_from_mesh_identity_still_500_after_the_mtp(mismatched_world):
    w = mismatched_world
    eventually(lambda: identity_ready(w) == "True", "MeshIdentity Ready=True")
    w.apply(rules_mtp(DEMO, "Prefix", f"spiffe://{TD}/ns/{DEMO}"))
    eventually(lambda: denied(w.counter(DEMO)), "a denial")
    stays(lambda: denied(w.counter(DEMO)), "SPIRE issues spiffe://other.example.org/..., never Kuma's ID")
