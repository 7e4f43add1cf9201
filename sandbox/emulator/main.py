"""`python -m sandbox.emulator --state-dir DIR`: start the emulated mesh of one sandbox and run until SIGTERM.

Start-up: the lifecycle starts the process alongside kwokctl, so its imports overlap the control plane's start, and
it waits for the `--wait-for` file (written once the API server is up); then serving certificate, watch streams,
webhooks on 127.0.0.1, the ConfigMap
`kube-public/meshid-sandbox-emulator` (url + caBundle, which the charts look up), the default StorageClass, the
kubelet, the data plane, then `<state_dir>/emulator.ready`. Afterwards a round (the storage knob, the kubelet, the
status writers) every `tick_s` of emulator.json, and at once when `set_faults` bumps its `generation`; each round ends
by writing the generation it acted on to `<state_dir>/emulator.applied`. Between rounds the data plane's view is
regenerated every `kuma.XDS_REFRESH_S`, as Kong Mesh's xDS server does.
"""

from __future__ import annotations

import argparse
import base64
import logging
import signal
import threading
import time
from pathlib import Path

from kubernetes import config as kube_config

from sandbox.emulator import certs, kuma, store, webhooks
from sandbox.emulator.config import APPLIED_FILE, CONFIG_FILE, ConfigSource
from sandbox.emulator.dataplane import DataPlane
from sandbox.emulator.kubeapi import Writer
from sandbox.emulator.kubelet import Kubelet
from sandbox.emulator.registration import Registrations
from sandbox.emulator.status import Reconciler
from sandbox.emulator.storage import Storage
from sandbox.processes import READY_POLL_S, write_atomically

PUBLISHED = ("kube-public", "meshid-sandbox-emulator")
SYNC_TIMEOUT_S = 30
CONFIG_POLL_S = 0.1  # how often a sleeping tick looks for new knobs (a stat of emulator.json)
log = logging.getLogger("emulator")


def wait_for(path: Path, timeout_s: float, stop: threading.Event) -> bool:
    """Wait until `path` exists; False if `timeout_s` passed first or `stop` was set."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if stop.wait(READY_POLL_S) or time.monotonic() > deadline:
            return False
    return True


def _sleep_until(deadline: float, config: ConfigSource, generation: int, stop: threading.Event) -> None:
    """Sleep until `deadline`, or less when new knobs arrive: `set_faults` waits for the round that acts on them."""
    while not stop.wait(max(0.0, min(CONFIG_POLL_S, deadline - time.monotonic()))):
        if time.monotonic() >= deadline or config.current.generation != generation:
            return


def run(state_dir: Path, stop: threading.Event) -> None:
    """Run the emulator for the sandbox in `state_dir` until `stop` is set."""
    config = ConfigSource(state_dir / CONFIG_FILE)
    api = kube_config.new_client_from_config(config_file=str(state_dir / "kubeconfig.yaml"))
    writer = Writer(api)
    serving = certs.issue(state_dir / "emulator")
    mirror = store.Store(api)
    mirror.start()
    if not mirror.wait_synced(SYNC_TIMEOUT_S):
        raise RuntimeError(f"the API server did not answer the first lists within {SYNC_TIMEOUT_S} s")
    url = webhooks.serve(webhooks.Admission(mirror, config, api), serving, lambda: dataplane.traffic())
    writer.put_config_map(*PUBLISHED, {"url": url, "caBundle": base64.b64encode(serving.ca_pem).decode()})
    registrations = Registrations(mirror, writer, state_dir)
    reconciler = Reconciler(mirror, writer, config, registrations)
    dataplane = DataPlane(mirror, writer, config, reconciler.converger)
    kubelet = Kubelet(mirror, writer, config, api)
    storage = Storage(writer, config)
    storage.tick(time.monotonic())  # the default StorageClass exists when `sandbox up` returns
    for kind, listener in ((store.PODS, kubelet.on_pod), (store.PODS, dataplane.on_pod),
                           (store.PODS, reconciler.on_pod), (store.PODS, registrations.on_pod),
                           (store.CLAIMS, storage.on_claim),
                           (store.VOLUMES, storage.on_volume)):
        mirror.subscribe(kind, listener)
        for obj in mirror.list(kind):
            listener("ADDED", obj)
    write_atomically(state_dir / "emulator.ready", url + "\n")
    log.info("ready: webhooks at %s, tick %.2f s", url, config.current.tick_s)
    try:
        next_round, applied = 0.0, None
        while not stop.is_set():
            generation = config.current.generation
            if time.monotonic() >= next_round or generation != applied:
                for part in (storage, kubelet, reconciler):
                    try:
                        part.tick(time.monotonic())
                    except Exception:  # noqa: BLE001 - an API failure of one part is retried next tick
                        log.exception("tick of %s failed", type(part).__name__)
                write_atomically(state_dir / APPLIED_FILE, f"{generation}\n")
                next_round, applied = time.monotonic() + config.current.tick_s, generation
            else:
                try:
                    reconciler.refresh(time.monotonic())
                except Exception:  # noqa: BLE001 - retried at the next refresh
                    log.exception("data plane refresh failed")
            _sleep_until(min(next_round, time.monotonic() + kuma.XDS_REFRESH_S), config, generation, stop)
    finally:
        dataplane.stop()
        mirror.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the emulator process."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.emulator", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True, help="the sandbox's state folder")
    parser.add_argument("--wait-for", type=Path, help="a file whose existence says the API server is up")
    parser.add_argument("--wait-s", type=float, default=300.0, help="how long to wait for it (default 300)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.wait_for and not wait_for(args.wait_for, args.wait_s, stop):
        if stop.is_set():
            return
        log.error("no %s after %.0f s: the control plane did not come up; exiting", args.wait_for, args.wait_s)
        raise SystemExit(1)
    run(args.state_dir, stop)
