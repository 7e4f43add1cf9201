"""The temporary Prefect server of a run started without PREFECT_API_URL, tied to the process that started it.

Prefect starts one itself when no API URL is set (`SubprocessASGIServer` in prefect/server/api/server.py: uvicorn
serving `prefect.server.api.server:create_app`, with `PREFECT__SERVER_EPHEMERAL=1` and the UI off), as a plain child
of the process: a Ctrl-C in a terminal reaches it too (one process group) and stops it while the run still needs it
for its cleanup, and a process killed by a signal leaves it running. This one is started the same way, but in a
session of its own, and the kernel kills it when its parent dies (PR_SET_PDEATHSIG, prctl(2)), whatever ends the
parent. Prefect's clients all ask `SubprocessASGIServer()` for the server of the default port, which is this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import prefect
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, get_current_settings

# Runs first in the server's process: asks for SIGKILL when its parent dies (prctl option 1 is PR_SET_PDEATHSIG),
# leaves if the parent is already gone, then becomes the server (the setting survives execve).
_TIE = ("import ctypes, os, sys\n"
        "ctypes.CDLL(None, use_errno=True).prctl(1, 9)\n"
        "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n")


class _TiedServer(SubprocessASGIServer):
    """Prefect's temporary server, in its own session, ended by the kernel with its parent."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        app = ["-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "error", "--lifespan", "on"]
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1", **get_current_settings().to_environment_variables(exclude_unset=True)}
        return subprocess.Popen([sys.executable, "-S", "-c", _TIE, str(os.getpid()), *app], env=env,
                                start_new_session=True)


def start_if_needed() -> None:
    """Without PREFECT_API_URL, start the temporary server now, from the main thread (the kernel ties it to the
    thread that started it, and the main thread lives as long as the process)."""
    if PREFECT_API_URL.value() or threading.current_thread() is not threading.main_thread():
        return
    _TiedServer().start()
