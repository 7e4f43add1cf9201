"""flows/engine.py is Prefect's engine: the same arguments, the same answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_engine_command_runs_prefects_engine_which_refuses_a_bad_flow_run_id(tmp_path):
    done = subprocess.run([sys.executable, "-m", "flows.engine", "not-a-uuid"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                                       "PREFECT_HOME": str(tmp_path), "DO_NOT_TRACK": "1"})
    # prefect/engine.py's __main__: an id that is no UUID is logged and ends the process with 1
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Invalid flow run id. Received arguments: " in done.stderr + done.stdout
    assert "'not-a-uuid'" in done.stderr + done.stdout
