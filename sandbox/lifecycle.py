"""Sandbox lifecycle: `up`, `down`, `down_all`, `get`, `status`, `set_faults`.

A sandbox is kwokctl's control-plane processes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok-controller, all bound to 127.0.0.1), K fake nodes, a chart repository and the emulated mesh, with all its
files under `<MESHID_HOME>/sandboxes/<name>/`. Several named sandboxes run side by side. A start can be stopped
(`stop`): it ends within a poll and leaves nothing. A sandbox may name its `owner` (whoever started it, e.g. a run),
kept as given.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sandbox import binaries, kwokstages, processes
from sandbox.errors import (InvalidName, PortInUse, SandboxError, SandboxExists, StartFailed, Stopped, ToolchainMissing,
                            UnknownSandbox)

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
KWOK_CRDS = ("PortForward", "ClusterPortForward", "Logs", "ClusterLogs", "Exec", "ClusterExec")
# Every port kwokctl's binary runtime binds. kwokctl would pick them itself, but two concurrent creates pick the same
# ones, so sandboxes allocate them here, under a lock, below the kernel's ephemeral range (32768+).
COMPONENT_PORTS = ("etcdPeerPort", "etcdPort", "kubeApiserverPort", "kwokControllerPort", "kubeControllerManagerPort",
                   "kubeSchedulerPort")
PORT_RANGE = range(21000, 32000)
# The kube-controller-manager controllers what runs on a sandbox needs: workloads, hook Jobs, namespaces and cascading
# deletion, service accounts, endpoints, PodDisruptionBudgets, aggregated roles, node lifecycle (it lifts the
# not-ready taint new nodes are created with), and the persistent volume binder with the claim and volume protection
# controllers (StatefulSet claims: the emulator provisions the volume, the binder binds it, the protection finalizers
# keep a claim in use). The rest (attach/detach, expansion, quotas, autoscaling, CSRs, cloud, ...) only cost CPU when
# many sandboxes share two cores.
CONTROLLERS = ("node-lifecycle-controller", "deployment-controller", "replicaset-controller", "statefulset-controller",
               "daemonset-controller", "job-controller", "ttl-after-finished-controller", "namespace-controller",
               "garbage-collector-controller", "pod-garbage-collector-controller", "serviceaccount-controller",
               "root-ca-certificate-publisher-controller", "endpoints-controller", "endpointslice-controller",
               "disruption-controller", "clusterrole-aggregation-controller", "persistentvolume-binder-controller",
               "persistentvolumeclaim-protection-controller", "persistentvolume-protection-controller")
KWOKCTL_TIMEOUT_S = 300
READY_TIMEOUT_S = 60
TRAFFIC_TIMEOUT_S = 10
READYZ_POLL_S = 0.05
READYZ_TIMEOUT_S = 5  # one /readyz request
API_UP_FILE = "api.up"  # written when kwokctl's control plane is up: the emulator, started earlier, waits for it
NODES_WATCH_SLICE_S = 2  # one watch of the nodes while waiting for them; a stop is seen in between
FAULTS_APPLIED_TIMEOUT_S = 30  # beyond a tick: one round of the emulator's writers, which may retry API calls
KWOKCTL_STOP_GRACE_S = 5.0  # after SIGTERM, before SIGKILL, when a start is stopped
Stop = Callable[[], bool]


def _never() -> bool:
    return False


@dataclass
class SandboxInfo:
    """What a running sandbox is and where its parts are."""

    name: str
    state_dir: Path
    kubeconfig: Path
    api_url: str
    chart_repo_url: str
    nodes: int
    pids: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0
    owner: dict | None = None  # who started it, as they described themselves (e.g. a run and its process)

    def to_json(self) -> dict:
        """JSON-ready form (paths as strings)."""
        data = asdict(self)
        data["state_dir"], data["kubeconfig"] = str(self.state_dir), str(self.kubeconfig)
        return data

    @classmethod
    def from_json(cls, data: dict) -> SandboxInfo:
        """Inverse of `to_json`."""
        return cls(**{**data, "state_dir": Path(data["state_dir"]), "kubeconfig": Path(data["kubeconfig"])})

    def running(self) -> bool:
        """True when the API server and every helper process of this sandbox are alive."""
        return all(processes.alive(pid) for pid in self.pids.values()) and _refused(self.api_url, 1) is None


def root() -> Path:
    """Folder holding one subfolder per sandbox."""
    return binaries.home() / "sandboxes"


def _state_dir(name: str) -> Path:
    return root() / name


def _validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InvalidName(f"sandbox name {name!r} is not a DNS-1123 label: use 1-40 lowercase letters, digits "
                          "and '-', starting and ending with a letter or digit (e.g. 'dev-1')")


def get(name: str) -> SandboxInfo:
    """The sandbox called `name`; raises UnknownSandbox when there is none."""
    _validate_name(name)
    state = _state_dir(name) / "state.json"
    if not state.is_file():
        names = sorted(p.parent.name for p in root().glob("*/state.json")) if root().is_dir() else []
        hint = f"known sandboxes: {', '.join(names)}" if names else "no sandbox is up"
        raise UnknownSandbox(f"no sandbox named {name!r} ({hint}); start one with `meshid sandbox up --name {name}`")
    return SandboxInfo.from_json(json.loads(state.read_text()))


def status() -> list[SandboxInfo]:
    """Every sandbox that has state on this machine, running or not."""
    if not root().is_dir():
        return []
    return [get(p.parent.name) for p in sorted(root().glob("*/state.json"))]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _allocate_ports(state_dir: Path, api_port: int | None) -> dict[str, int]:
    """Free ports for every component, none used by another sandbox; recorded in `ports.json` under a lock."""
    root().mkdir(parents=True, exist_ok=True)
    with (root() / "ports.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = {port for f in root().glob("*/ports.json") for port in json.loads(f.read_text()).values()}
        ports: dict[str, int] = {}
        candidates = (p for p in PORT_RANGE if p not in taken and p != api_port and _port_free(p))
        for key in COMPONENT_PORTS:
            ports[key] = api_port if key == "kubeApiserverPort" and api_port else next(candidates)
        (state_dir / "ports.json").write_text(json.dumps(ports))
    return ports


def _kwok_config(path: Path, ports: dict[str, int]) -> None:
    lines = ["kind: KwokctlConfiguration", "apiVersion: config.kwok.x-k8s.io/v1alpha1", "options:",
             "  bindAddress: 127.0.0.1", "  runtime: binary"]
    lines += [f"  {key}: {port}" for key, port in ports.items()]
    lines += ["componentsPatches:", "- name: kube-controller-manager", "  extraArgs:", "  - key: controllers",
              f"    value: {','.join(CONTROLLERS)}"]
    stages = kwokstages.documents(binaries.kwok_stages_dir(), binaries.KWOK_STAGES)
    path.write_text("\n".join(lines) + "\n" + stages)


def _kwokctl(args: list[str], state_dir: Path, timeout_s: float = KWOKCTL_TIMEOUT_S, stop: Stop = _never) -> str:
    """Run kwokctl for the sandbox. Its PATH, which the kwok controller inherits, starts with the sandbox's own
    `bin` folder: commands exec'd into pods with a kwok Exec (spire-server's CLI) are looked up there."""
    bin_dir = binaries.bin_dir()
    path = [str(state_dir / "bin"), str(bin_dir), str(Path(binaries.kubectl()).parent), os.environ.get("PATH", "")]
    env = {**os.environ, "KWOK_WORKDIR": str(state_dir / "kwok"), "KWOK_RUNTIME": "binary", "PATH": os.pathsep.join(path)}
    command = f"kwokctl {' '.join(args[:2])}"
    proc = subprocess.Popen([str(bin_dir / "kwokctl"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=max(0.0, min(processes.STOP_POLL_S, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if stop():
                    processes.stop(proc.pid, group=False, timeout_s=KWOKCTL_STOP_GRACE_S)
                    raise Stopped(f"`{command}` stopped on request") from None
                if time.monotonic() >= deadline:
                    raise StartFailed(f"`{command}` did not finish within {timeout_s:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise StartFailed(f"`{command}` failed (exit {proc.returncode}):\n{err.strip()[-2000:]}")
    return out


def _api_url(kubeconfig: Path) -> str:
    for line in kubeconfig.read_text().splitlines():
        if line.strip().startswith("server:"):
            return line.split("server:", 1)[1].strip()
    raise StartFailed(f"no server URL in {kubeconfig}")


def _wait_ready(kubeconfig: Path, nodes: int, timeout_s: float, stop: Stop) -> None:
    """Wait until the API server's /readyz answers ok, then until `nodes` nodes are Ready."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    deadline = time.monotonic() + timeout_s
    try:
        _wait_api_ready(api, deadline, timeout_s, stop)
        _wait_nodes_ready(api, nodes, deadline, timeout_s, stop)
    finally:
        api.close()


def _stopped(stop: Stop, what: str) -> None:
    if stop():
        raise Stopped(f"stopped on request while waiting for {what}")


def _wait_api_ready(api, deadline: float, timeout_s: float,  # noqa: ANN001 - ApiClient
                    stop: Stop = _never) -> None:
    """kwokctl's own wait runs `kubectl get --raw /healthz` every 0.5 s (a kubectl start each, 0.3-0.5 s while the
    control plane starts): polled here directly, the ready API server is noticed within READYZ_POLL_S."""
    from kubernetes.client.exceptions import ApiException

    from sandbox.rawapi import text

    last = "no answer yet"
    while time.monotonic() < deadline:
        _stopped(stop, "the API server's /readyz")
        refused = _refused(api.configuration.host, READYZ_TIMEOUT_S)
        if refused:
            last = f"{refused} at {api.configuration.host}"
            time.sleep(READYZ_POLL_S)
            continue
        try:
            if text(api, "/readyz", timeout_s=READYZ_TIMEOUT_S).strip() == "ok":
                return
        except ApiException as exc:
            failing = [line.strip() for line in (exc.body or "").splitlines() if "failed" in line]
            last = f"HTTP {exc.status}: {'; '.join(failing) or exc.reason}"
        except Exception as exc:  # noqa: BLE001 - connection refused or reset while the server starts
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(READYZ_POLL_S)
    raise StartFailed(f"waited {timeout_s:.0f} s for the API server's /readyz to answer ok; last: {last[:500]}")


def _refused(url: str, timeout_s: float) -> str | None:
    """Why nothing accepts connections at the API server's `url` (yet), or None when something does. While it starts,
    a refused connect costs microseconds, and a refused request through the client its retries (urllib3 tries again
    three times, logging each)."""
    try:
        address = urllib.parse.urlsplit(url)
        if not address.hostname:
            return f"no host in {url!r}"
        with socket.create_connection((address.hostname, address.port or 443), timeout=timeout_s):
            return None
    except (OSError, ValueError) as exc:  # ValueError: a port that is no number
        return f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"


def _wait_nodes_ready(api, count: int, deadline: float, timeout_s: float,  # noqa: ANN001 - ApiClient
                      stop: Stop) -> None:
    from sandbox.rawapi import watch

    ready: set[str] = set()
    last = "no node seen"
    while len(ready) < count and time.monotonic() < deadline:
        _stopped(stop, f"{count} Ready nodes")
        for event in watch(api, "/api/v1/nodes", max(1, min(NODES_WATCH_SLICE_S, int(deadline - time.monotonic())))):
            node = event["object"]
            name = node.get("metadata", {}).get("name", "?")
            conds = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
            last = f"node {name} Ready={conds.get('Ready', 'unknown')}"
            (ready.add if event["type"] != "DELETED" and conds.get("Ready") == "True" else ready.discard)(name)
            if len(ready) >= count:
                break
    if len(ready) < count:
        raise StartFailed(f"waited {timeout_s:.0f} s for {count} Ready nodes, saw {len(ready)}; last: {last}")


def up(name: str, nodes: int = 1, api_port: int | None = None, tick_s: float = 5.0,
       timeout_s: float = 180.0, owner: dict | None = None, starting: Callable[[], None] = lambda: None,
       stop: Stop = _never) -> SandboxInfo:
    """Start the sandbox `name` with `nodes` Ready nodes and return its info; on any failure nothing is left.

    `owner` is kept in its state as given; `starting` is called once the name is known to be free, before anything
    is created; `stop` is polled while it starts: when it turns true the start ends, removes what it started and
    raises `Stopped`.
    """
    _validate_name(name)
    if nodes < 1 or nodes > 50:
        raise SandboxError(f"--nodes {nodes} is out of range: use 1 to 50")
    state_dir = _state_dir(name)
    if (state_dir / "state.json").is_file():
        if get(name).running():
            raise SandboxExists(f"sandbox {name!r} is already up; use it, or `meshid sandbox down --name {name}` first")
        down(name)
    elif state_dir.exists():
        _remove_leftovers(state_dir)
    if api_port is not None and not _port_free(api_port):
        raise PortInUse(f"port {api_port} on 127.0.0.1 is in use: pick another --api-port, or omit it for a free one")
    if importlib.util.find_spec("cryptography") is None:  # the emulator's certificates; else it dies at its import
        raise ToolchainMissing("the sandbox's emulator needs the Python package cryptography: install meshid with its "
                               "sandbox extra (`pip install -e '.[sandbox]'`; `make install` does)")
    binaries.ensure()
    binaries.kubectl()
    starting()
    state_dir.mkdir(parents=True)
    try:
        return _start(name, nodes, api_port, tick_s, timeout_s, state_dir, owner, stop)
    except BaseException:
        _teardown(name, state_dir, pids={})
        raise


def _start(name: str, nodes: int, api_port: int | None, tick_s: float, timeout_s: float,
           state_dir: Path, owner: dict | None, stop: Stop) -> SandboxInfo:
    """Start the parts, overlapping what does not depend on each other: the chart repository needs no cluster and
    comes up while kwokctl starts the control plane; the emulator starts then too (its imports take 0.3-0.4 s) and
    connects as soon as the API server is up, while the nodes register."""
    bin_dir = binaries.bin_dir()
    kubeconfig = state_dir / "kubeconfig.yaml"
    logs = state_dir / "logs"
    pids: dict[str, int] = {}
    info = SandboxInfo(name=name, state_dir=state_dir, kubeconfig=kubeconfig, api_url="", chart_repo_url="",
                       nodes=nodes, pids=pids, created_at=time.time(), owner=owner)
    from sandbox.emulator import spirecli  # the world's own file; meshid, which imports this module, never loads it

    _kwok_config(state_dir / "kwokctl.yaml", _allocate_ports(state_dir, api_port))
    spirecli.install(state_dir / "bin", sys.executable)
    args = ["create", "cluster", "--name", name, "--runtime", "binary", "-c", str(state_dir / "kwokctl.yaml"),
            "--kubeconfig", str(kubeconfig),  # no --wait: _wait_ready polls faster than kwokctl
            "--enable-crds", ",".join(KWOK_CRDS),
            # with no default route (a private network namespace) the apiserver cannot pick an address itself
            "--extra-args", "kube-apiserver=advertise-address=127.0.0.1"]
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        args += [f"--{component}-binary", str(bin_dir / component)]
    args += ["--kwok-controller-binary", str(bin_dir / "kwok")]
    try:
        charts_ready = state_dir / "chartrepo.ready"
        pids["chartrepo"] = processes.start(
            [sys.executable, "-m", "sandbox.chartrepo", "--ready-file", str(charts_ready)], logs / "chartrepo.log",
            env=_child_env())
        _write_emulator_config(state_dir, {"tick_s": tick_s})
        emulator_ready = state_dir / "emulator.ready"
        pids["emulator"] = processes.start(
            [sys.executable, "-m", "sandbox.emulator", "--state-dir", str(state_dir), "--wait-for",
             str(state_dir / API_UP_FILE), "--wait-s", str(timeout_s + 30)], logs / "emulator.log", env=_child_env())
        _kwokctl(args, state_dir, timeout_s + 30, stop)
        info.api_url = _api_url(kubeconfig)
        processes.write_atomically(state_dir / API_UP_FILE, info.api_url + "\n")  # the emulator goes on from here
        _kwokctl(["scale", "node", "--name", name, "--replicas", str(nodes)], state_dir, stop=stop)
        _wait_ready(kubeconfig, nodes, timeout_s, stop)
        info.chart_repo_url = processes.wait_ready(charts_ready, pids["chartrepo"], "chart repository",
                                                   logs / "chartrepo.log", READY_TIMEOUT_S, stop)
        processes.wait_ready(emulator_ready, pids["emulator"], "mesh emulator", logs / "emulator.log",
                             READY_TIMEOUT_S, stop)
    finally:
        _save(info)
    return info


def _child_env() -> dict[str, str]:
    """Environment for helper processes: this interpreter's package path first, so `-m sandbox.*` resolves."""
    project = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": project + (os.pathsep + path if path else "")}


def _save(info: SandboxInfo) -> None:
    processes.write_atomically(info.state_dir / "state.json", json.dumps(info.to_json(), indent=2))


def _write_emulator_config(state_dir: Path, values: dict) -> None:
    processes.write_atomically(state_dir / "emulator.json", json.dumps(values, indent=2, sort_keys=True))


def set_faults(name: str, **knobs: object) -> dict:
    """Merge fault knobs into the sandbox's emulator config (validated by the emulator's schema) and return it once
    the emulator has finished a round with them: a removed StorageClass is gone, a new tick is in force."""
    from sandbox.emulator.config import APPLIED_FILE, CONFIG_FILE, EmulatorConfig

    info = get(name)
    current = json.loads((info.state_dir / CONFIG_FILE).read_text())
    merged = EmulatorConfig.model_validate(
        {**current, **knobs, "generation": current.get("generation", 0) + 1}).model_dump(mode="json")
    _write_emulator_config(info.state_dir, merged)
    processes.wait_ready(info.state_dir / APPLIED_FILE, info.pids["emulator"],
                         f"the mesh emulator's round with knobs generation {merged['generation']}",
                         info.state_dir / "logs" / "emulator.log",
                         max(current.get("tick_s", 0), merged["tick_s"]) + FAULTS_APPLIED_TIMEOUT_S,
                         accept=lambda text: text.isdigit() and int(text) >= merged["generation"])
    return merged


def traffic(name: str) -> list[dict]:
    """What the sandbox's data plane allowed and denied so far, per client and server workload (`namespace/app`):
    [{"client", "server", "allowed", "denied"}], from the emulator's status endpoint."""
    import urllib.request

    from sandbox.emulator.certs import CA_FILE
    from sandbox.emulator.webhooks import TRAFFIC_PATH

    state_dir = get(name).state_dir
    url = (state_dir / "emulator.ready").read_text().strip()
    tls = ssl.create_default_context(cafile=str(state_dir / "emulator" / CA_FILE))
    with urllib.request.urlopen(url + TRAFFIC_PATH, timeout=TRAFFIC_TIMEOUT_S, context=tls) as answer:
        return json.loads(answer.read())


def down(name: str) -> None:
    """Stop every process of the sandbox `name` and remove its files; raises UnknownSandbox if there is none.

    A sandbox whose start never wrote its state (its starter was killed) is found by its folder and its processes'
    command lines."""
    _validate_name(name)
    state_dir = _state_dir(name)
    if (state_dir / "state.json").is_file():
        _teardown(name, state_dir, get(name).pids)
    elif state_dir.is_dir():
        _teardown(name, state_dir, pids={})
    else:
        get(name)  # raises UnknownSandbox, naming the sandboxes there are


def down_all() -> list[str]:
    """Stop every sandbox on this machine, started or half-started; return their names."""
    names = sorted(p.name for p in root().iterdir() if p.is_dir() and NAME_RE.match(p.name)) if root().is_dir() else []
    for name in names:
        down(name)
    return names


def _teardown(name: str, state_dir: Path, pids: dict[str, int]) -> None:
    """Stop the helpers while kwokctl stops the control plane (nothing of either is kept), then sweep leftovers."""
    helpers = [threading.Thread(target=processes.stop, args=(pid,), daemon=True) for pid in pids.values()]
    for thread in helpers:
        thread.start()
    if (state_dir / "kwok").is_dir():
        try:
            _kwokctl(["delete", "cluster", "--name", name], state_dir, 120)
        except StartFailed:
            pass  # whatever kwokctl could not stop is killed below
    for thread in helpers:
        thread.join()
    _remove_leftovers(state_dir)


def _remove_leftovers(state_dir: Path) -> None:
    for pid in processes.using(state_dir):
        processes.stop(pid, group=False, timeout_s=5)
    left = processes.using(state_dir)
    if left:
        raise SandboxError(f"processes {left} of {state_dir} survived SIGKILL; remove them by hand")
    shutil.rmtree(state_dir, ignore_errors=True)
