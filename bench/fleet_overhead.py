"""Benchmark: the orchestration CPU a fleet costs per target, with local and with worker dispatch.

A validate fleet of 8 sandbox targets at concurrency 4, one trust domain, run by `meshid fleet` (a process of its
own) against a stack of its own (`deployments.stack`: PostgreSQL, a Prefect server, two process workers), first with
dispatch local, then with dispatch workers. While each runs, every process's CPU time (utime + stime,
/proc/<pid>/stat) is sampled every SAMPLE_S and attributed to:
- server: the Prefect server's process tree; postgres: the PostgreSQL processes (the server's database);
- parent: the `meshid fleet` process;
- workers: the workers' own Python processes: each worker, the flow-run command it starts per run
  (`flows/engine.py`), and the warm engine of this checkout (`flows/engine_server.py`) with the run processes it
  forks for those commands;
and not counted: the clusters (kube-apiserver, etcd, kwok, the emulator and the other sandbox processes), helm and
kubectl. A process's CPU counts from the first sample of the run (or its birth) to its last sample, so up to SAMPLE_S
of a process that ends during the run is missed. Per mode and round it prints each part divided by the targets; then
`cpu_per_target[_workers]=<server + postgres + parent + workers per target>`, the median over the rounds (the modes
alternate within a round, so both meet the same machine); the last line is `cpu_per_target=<local>`. Targets: local
<= 2.5, workers within 1.5 of local.

Run it inside a private network namespace:
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python bench/fleet_overhead.py'
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from deployments.stack import WORKERS, Stack, descendants, running
from flows.engine_server import running_servers
from guide_vs_shell import _free_port, warn_if_shared
from meshid.runrecord import Writer, proc_stat

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
SAMPLE_S = 0.25
TICKS = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT_S = 1800
PARTS = ("server", "postgres", "parent", "workers")
# the fleet process's log level, the stack's workers' (deployments/stack.py): both modes send the same logs
LOG_LEVEL = "INFO"


def _cpu_s(pid: int) -> float | None:
    fields = proc_stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def _cmdline(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    except OSError:
        return ""


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


class Sampler:
    """Samples the CPU of the processes of each part in a thread; `totals()` is CPU seconds per part."""

    def __init__(self, stack: Stack, parent: int) -> None:
        self.stack, self.parent = stack, parent
        self.engines: set[Writer] = set()  # every warm engine seen: it serves its runs on after it stopped listening
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _parts(self) -> dict[int, str]:
        found: dict[int, str] = {}
        server = running(self.stack, "server")
        if server:
            found.update({pid: "server" for pid in (server.pid, *descendants(server.pid))})
        self.engines.update(running_servers())
        tops = [w.pid for w in (*(running(self.stack, name) for name in WORKERS), *self.engines) if w and w.alive()]
        for top in tops:
            for pid in (top, *descendants(top)):
                # the workers' own Python processes; the sandboxes their runs start are the world (their command
                # lines name `sandbox.`), helm and kubectl are not Python
                if "python" in _exe(pid) and "sandbox" not in _cmdline(pid):
                    found[pid] = "workers"
        found[self.parent] = "parent"
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _exe(int(entry.name)).startswith("/usr/lib/postgresql/"):
                found[int(entry.name)] = "postgres"
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, part in self._parts().items():
                cpu = _cpu_s(pid)
                if cpu is None:
                    continue
                self.first.setdefault(pid, 0.0)  # born during the run
                self.last[pid] = (part, cpu)
            self._stop.wait(SAMPLE_S)

    def start(self) -> None:
        self._run_once_before()
        self._thread.start()

    def _run_once_before(self) -> None:
        """Processes that run before the fleet count from here (their earlier CPU is not the fleet's)."""
        for pid, part in self._parts().items():
            cpu = _cpu_s(pid)
            if cpu is not None:
                self.first[pid] = cpu
                self.last[pid] = (part, cpu)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        totals: dict[str, float] = defaultdict(float)
        for pid, (part, cpu) in self.last.items():
            totals[part] += cpu - self.first.get(pid, 0.0)
        return {part: totals.get(part, 0.0) for part in PARTS}


def _run_fleet(env: dict[str, str], stack: Stack, work: Path, mode: str, targets: int, concurrency: int,
               prefix: str) -> tuple[dict[str, float], float]:
    fleet_file = work / f"fleet-{mode}.yaml"
    fleet_file.write_text(json.dumps({
        "mode": "validate", "dispatch": mode, "concurrency": concurrency, "trust_domains": ["default.default.mesh.local"],
        "targets": [{"name": f"{prefix}-{mode[0]}{i}", "provider": "sandbox",
                     **({"work_queue": "eu"} if mode == "workers" and i % 2 else {})} for i in range(targets)]}))
    report = work / f"fleet-{mode}.json"
    log = work / f"fleet-{mode}.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "meshid"), "fleet", "--fleet-file", str(fleet_file), "--json-report",
                                 str(report)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    sampler = Sampler(stack, proc.pid)
    sampler.start()
    try:
        code = proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        totals = sampler.stop()
    wall = time.monotonic() - started
    outcome = json.loads(report.read_text())["outcome"] if report.exists() else "no report"
    if code != 0 or outcome != "passed":
        raise SystemExit(f"the {mode} fleet ended {outcome} (exit {code}), so its figures mean nothing; see {log}")
    return totals, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tick", type=float, default=1.0, help="emulator status tick, seconds")
    parser.add_argument("--modes", nargs="+", default=["local", "workers"], choices=["local", "workers"])
    parser.add_argument("--rounds", type=int, default=1,
                        help="fleets per mode, on one stack; the figure is their median")
    args = parser.parse_args()
    warn_if_shared()
    with open("/proc/loadavg") as load:
        print(f"load average before: {' '.join(load.read().split()[:3])} on {os.cpu_count()} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="meshid-overhead-"))
    stack = Stack(ROOT / ".state" / f"bench-{os.getpid()}", _free_port(), _free_port())
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env = {**base, "MESHID_SANDBOX_TICK_S": str(args.tick), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": LOG_LEVEL, "PREFECT_API_URL": stack.api_url, "PREFECT_HOME": str(work / "home"),
           "MESHID_RUNS_DIR": str(work / "runs")}
    stack_argv = [str(BIN / "python"), "-m", "deployments.stack", "--state-dir", str(stack.state_dir),
                  "--api-port", str(stack.api_port), "--pg-port", str(stack.pg_port)]
    figures: dict[str, list[float]] = defaultdict(list)
    try:
        subprocess.run([*stack_argv[:3], "up", *stack_argv[3:]], env=env, cwd=ROOT, check=True, timeout=900,
                       stdout=subprocess.DEVNULL)
        for round_ in range(args.rounds):
            prefix = f"ov-{secrets.token_hex(2)}"
            for mode in args.modes:
                totals, wall = _run_fleet(env, stack, work, mode, args.targets, args.concurrency, prefix)
                per = {part: cpu / args.targets for part, cpu in totals.items()}
                figures[mode].append(sum(per.values()))
                print(f"{mode} round {round_ + 1}: wall={wall:.1f}s "
                      + " ".join(f"{part}={per[part]:.2f}" for part in PARTS) + f" total={figures[mode][-1]:.2f}"
                      + f" (CPU seconds per target; {args.targets} targets, concurrency {args.concurrency})",
                      flush=True)
    finally:
        subprocess.run([*stack_argv[:3], "down", *stack_argv[3:]], env=env, cwd=ROOT, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(stack.state_dir, ignore_errors=True)
    with open("/proc/loadavg") as load:
        print(f"load average after: {' '.join(load.read().split()[:3])}; run files in {work}")
    if "workers" in figures:
        print(f"cpu_per_target_workers={statistics.median(figures['workers']):.2f}")
    if "local" in figures:
        print(f"cpu_per_target={statistics.median(figures['local']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
