"""`bench/guide.sh`, the guide's own commands against a fresh sandbox, prints what the guide shows."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.conftest import require_private_netns

pytestmark = pytest.mark.sandbox

GUIDE = Path(__file__).resolve().parents[2] / "bench" / "guide.sh"
TIMEOUT_S = 600


def test_guide_sh_shows_the_500_then_the_counter():
    require_private_netns()
    done = subprocess.run(["bash", str(GUIDE)], env={**os.environ, "SANDBOX_TICK": "1"}, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any('"title":"failed to retrieve zone"' in line for line in lines)
    assert '{"counter":1,"zone":""}' in lines
    assert "before the MeshTrafficPermission: HTTP 500 failed to retrieve zone, as the guide shows" in lines
    assert any(line.startswith('after the MeshTrafficPermission: {"counter":1,"zone":""}') for line in lines)
