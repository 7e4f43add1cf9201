"""Benchmark: the meshid pipeline against the guide's own commands (bench/guide.sh), same emulator timings.

Each round runs both on fresh sandboxes, alternating which goes first; the last line is the median ratio
pipeline / shell as `ratio=<x>` (target: 0.8 or less).

Run it inside a private network namespace:
    unshare -n sh -c 'ip link set lo up; exec .venv/bin/python bench/guide_vs_shell.py'

The pipeline talks to one `prefect server start` shared by all rounds, as scheduled and UI runs do; Prefect's
one-off server start-up is measured and printed once, separately (bench/cli_cold.py measures a plain `meshid run`,
which uses meshid's background server).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MESHID = str(ROOT / ".venv" / "bin" / "meshid")
RUN_TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def prefect_server(home: Path):
    """A `prefect server start` on 127.0.0.1; yields the environment that points at it."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_UI_ENABLED": "false"}
    started = time.monotonic()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("prefect server did not answer /api/health within 120 s")
        print(f"prefect server start-up (once): {time.monotonic() - started:.1f}s", flush=True)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def competing_processes() -> list[str]:
    """Control planes and Prefect servers already running here: they take CPU from every round, on both sides, but not
    evenly (one leftover sandbox and three idle Prefect servers, about 15 % of a core, ran during three 7-round runs
    that printed 0.77, 0.82 and 0.91; the same code printed 0.77 and 0.76 without them). A Prefect server is
    `prefect server start` (also as `python -m prefect`, as meshid's background server runs) or the uvicorn of a
    temporary server Prefect starts itself."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0") if proc.name.isdigit() else []
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if argv and argv[0].endswith("kube-apiserver"):
            sandbox = argv[0].split("/sandboxes/", 1)[1].split("/", 1)[0] if "/sandboxes/" in argv[0] else None
            found.append(f"sandbox {sandbox} (stop it: meshid sandbox down --name {sandbox})" if sandbox
                         else f"kube-apiserver pid {proc.name}")
        elif any(a.endswith("prefect") and argv[i + 1:i + 3] == ["server", "start"] for i, a in enumerate(argv[:3])):
            found.append(f"prefect server start pid {proc.name}")
        elif "prefect.server.api.server:create_app" in argv:
            found.append(f"temporary Prefect server pid {proc.name}")
    return sorted(found)


def warn_if_shared() -> None:
    """Say which processes will share the machine with the benchmark, before it starts."""
    others = competing_processes()
    if others:
        print(f"warning: {len(others)} other process(es) will take CPU from the rounds and skew the figures: "
              f"{'; '.join(others)}", flush=True)


def timed(argv: list[str], env: dict[str, str], log: Path) -> float:
    """Seconds `argv` took; output to `log`; a failure ends the benchmark (its time would mean nothing)."""
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed (exit {done.returncode}); see {log}")
    return elapsed


def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of one pipeline run and one shell run (>= 3; "
                        "the default 5, as a sandbox's start alone varies by up to 2 s)")
    parser.add_argument("--tick", type=float, default=1.0, help="emulator status tick for both, seconds")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error(f"--rounds {args.rounds}: a median needs at least 3 rounds")
    warn_if_shared()
    work = Path(tempfile.mkdtemp(prefix="meshid-bench-"))
    base = {**os.environ, "MESHID_SANDBOX_TICK_S": str(args.tick), "SANDBOX_TICK": str(args.tick),
            "MESHID_RUNS_DIR": str(work / "runs"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with prefect_server(work / "prefect") as env:
        env = {**base, **env}
        pipeline, shell = [], []
        for i in range(args.rounds):
            runs = [("pipeline", [MESHID, "run", "--target-name", f"bench-{i}"], pipeline),
                    ("shell", ["bash", str(ROOT / "bench" / "guide.sh")], shell)]
            for label, argv, times in (runs if i % 2 == 0 else runs[::-1]):
                times.append(timed(argv, env, work / f"{label}-{i}.log"))
                print(f"round {i + 1} {label}: {times[-1]:.1f}s", flush=True)
    med_p, med_s = statistics.median(pipeline), statistics.median(shell)
    print(f"median pipeline {med_p:.1f}s, median shell {med_s:.1f}s over {args.rounds} rounds (logs in {work})")
    print(f"ratio={med_p / med_s:.2f}")


if __name__ == "__main__":
    sys.exit(main())
