"""Benchmark: the fleet flow in validate mode on 1, 2, 4 and 8 sandbox targets at concurrency 4, one trust domain.

For each size it prints the wall time of the fleet run and the peak RSS of this process tree, sampled every 0.5 s
(this process is made a child subreaper, so the sandboxes' detached kube-apiserver, etcd, ... count too; the
Prefect server is a child as well, so the idle baseline before each run is printed and subtracted). The last line
is `ratio=<wall(largest size) / wall(smallest size)>`: wall(8)/wall(1) with the default sizes. Target: <= 2.5.

Run it inside a private network namespace:
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python bench/fleet_scaling.py'
"""

from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

from guide_vs_shell import prefect_server, warn_if_shared

PR_SET_CHILD_SUBREAPER = 36
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and all its descendants, in KiB (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as statm:
                rss[int(entry)] = int(statm.read().split()[1]) * PAGE_KB
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we read it
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class PeakSampler:
    """Samples `tree_rss_kb(os.getpid())` in a thread until stopped; `peak_kb` is the highest sample."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s, self.peak_kb = interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(os.getpid()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_fleet(size: int, concurrency: int, prefix: str) -> tuple[float, str]:
    """One validate fleet of `size` fresh sandbox targets: (wall seconds, outcome message)."""
    from flows.fleet import fleet
    from flows.foreground import foreground
    from meshid.fleet.spec import parse_fleet

    spec = parse_fleet({"mode": "validate", "concurrency": concurrency, "trust_domains": ["default.default.mesh.local"],
                        "targets": [{"name": f"{prefix}-{size}-{i}", "provider": "sandbox"} for i in range(size)]})
    started = time.monotonic()
    with foreground():  # as `meshid fleet` runs it
        state = fleet(spec=spec, return_state=True)
    elapsed = time.monotonic() - started
    if not state.is_completed():
        raise SystemExit(f"the fleet of {size} failed, so its time means nothing: {state.message}")
    return elapsed, str(state.message)


def main() -> int:
    """Run every size and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8], help="fleet sizes (targets)")
    parser.add_argument("--concurrency", type=int, default=4, help="targets worked on at once")
    parser.add_argument("--tick", type=float, default=1.0, help="emulator status tick, seconds")
    args = parser.parse_args()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    warn_if_shared()
    work = Path(tempfile.mkdtemp(prefix="meshid-fleet-bench-"))
    os.environ.update({"MESHID_SANDBOX_TICK_S": str(args.tick), "MESHID_RUNS_DIR": str(work / "runs"),
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"})
    prefix = f"scale-{secrets.token_hex(2)}"
    walls: dict[int, float] = {}
    with prefect_server(work / "prefect") as env:
        os.environ.update(env)  # before flows import prefect, so the flows talk to this server
        import flows.fleet  # noqa: F401 (loaded before the first baseline, like for every later size)
        for size in sorted(args.sizes):
            baseline = tree_rss_kb(os.getpid())
            with PeakSampler() as sampler:
                walls[size], message = run_fleet(size, args.concurrency, prefix)
            print(f"targets={size} concurrency={args.concurrency} wall={walls[size]:.1f}s "
                  f"peak_rss={sampler.peak_kb / 1024:.0f}MiB baseline={baseline / 1024:.0f}MiB "
                  f"peak_minus_baseline={(sampler.peak_kb - baseline) / 1024:.0f}MiB ({message})", flush=True)
    small, large = min(walls), max(walls)
    print(f"wall({large})/wall({small}) on {os.cpu_count()} cores; run files in {work}")
    print(f"ratio={walls[large] / walls[small]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
