"""Benchmark: `meshid run` from a fresh shell (no PREFECT_API_URL, so meshid's background Prefect server) against the
same command pointed at an explicit `prefect server start` (PREFECT_API_URL), on fresh sandboxes.

Each side first makes one untimed warm-up run (the background side's starts its server, and the figure is printed).
Each round then starts one fresh sandbox per side, outside the timing, and times `meshid run --provider context
--cleanup never` on it, alternating which side goes first. Every run is a new process with a plain environment, as a
shell starts it. The last line is the median ratio background / explicit as `ratio=<x>` (target: 1.1 or less).

The benchmark has a meshid home of its own (the built binaries linked in), so it never touches the background server
of whoever runs it, and stops its own at the end.

Run it inside a private network namespace:
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python bench/cli_cold.py'
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from guide_vs_shell import MESHID, prefect_server, timed, warn_if_shared

MIN_ROUNDS = 4


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> int:
    """Run the warm-ups and the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help=f"rounds of one run per side (>= {MIN_ROUNDS})")
    parser.add_argument("--tick", type=float, default=1.0, help="emulator status tick, seconds")
    args = parser.parse_args()
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds {args.rounds}: at least {MIN_ROUNDS}")
    warn_if_shared()
    print(f"machine: {os.cpu_count()} cores, {_load()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="meshid-cli-cold-"))
    home = work / "home"
    home.mkdir()
    from sandbox import binaries

    (home / "bin").symlink_to(binaries.home() / "bin")
    os.environ["MESHID_HOME"] = str(home)  # this process starts the sandboxes in the benchmark's home too
    from meshid.prefectserver import BackgroundServer
    from sandbox import lifecycle

    plain = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE",
                                                               "PREFECT_PROFILES_PATH")}
    plain.update(MESHID_RUNS_DIR=str(work / "runs"), PREFECT_HOME=str(work / "prefect-client"))

    def run(env: dict[str, str], name: str) -> float:
        """One timed `meshid run` on a fresh sandbox, started and removed outside the timing."""
        info = lifecycle.up(name, tick_s=args.tick)
        try:
            return timed([MESHID, "run", "--provider", "context", "--kubeconfig", str(info.kubeconfig),
                          "--chart-mirror", info.chart_repo_url, "--cleanup", "never", "--target-name", name], env,
                         work / f"{name}.log")
        finally:
            lifecycle.down(name)

    try:
        with prefect_server(work / "prefect-explicit") as server_env:
            sides = {"background": plain, "explicit": {**plain, "PREFECT_API_URL": server_env["PREFECT_API_URL"]}}
            for side, env in sides.items():
                print(f"warm-up {side}: {run(env, f'warm-{side}'):.1f}s", flush=True)
            server = BackgroundServer(home).look().record
            print(f"the background server's first start (a new database), within the warm-up: "
                  f"{(server.ready_at - server.started_at).total_seconds():.1f}s", flush=True)
            times: dict[str, list[float]] = {side: [] for side in sides}
            for i in range(args.rounds):
                order = list(sides) if i % 2 == 0 else list(sides)[::-1]
                for side in order:
                    times[side].append(run(sides[side], f"cold-{side[0]}-{i}"))
                    print(f"round {i + 1} {side}: {times[side][-1]:.1f}s ({_load()})", flush=True)
    finally:
        BackgroundServer(home).stop()
    background, explicit = statistics.median(times["background"]), statistics.median(times["explicit"])
    paired = statistics.median(b / e for b, e in zip(times["background"], times["explicit"]))
    print(f"median background {background:.1f}s, median explicit {explicit:.1f}s over {args.rounds} rounds, median of "
          f"the rounds' own ratios {paired:.2f} (logs in {work}; {_load()})")
    print(f"ratio={background / explicit:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
