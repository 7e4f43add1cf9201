"""Locate the sandbox binaries, building them first (once, cached by version) when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sandbox.errors import StartFailed, ToolchainMissing

BUILD_SCRIPT = Path(__file__).with_name("build.sh")
REQUIRED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kwokctl", "helm")
KWOK_STAGES = ("node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete")
BUILD_TIMEOUT_S = 3600


def home() -> Path:
    """The cache folder shared with meshid (`MESHID_HOME`, default ~/.cache/meshid)."""
    return Path(os.environ.get("MESHID_HOME", Path.home() / ".cache" / "meshid")).expanduser()


def bin_dir() -> Path:
    """The folder of links to the current binaries."""
    return home() / "bin" / "current"


def kwok_stages_dir() -> Path:
    """The folder of kwok's default Stage files (one `<name>.yaml` per KWOK_STAGES), taken from the kwok module."""
    return bin_dir() / "kwok-stages"


def missing() -> list[str]:
    """Names of required binaries (and kwok stage files) not yet built."""
    return [name for name in REQUIRED if not os.access(bin_dir() / name, os.X_OK)] + \
        [f"kwok-stages/{name}.yaml" for name in KWOK_STAGES if not (kwok_stages_dir() / f"{name}.yaml").is_file()]


def ensure(timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """Return the binaries folder, running `build.sh` when anything is missing."""
    if not missing():
        return bin_dir()
    if shutil.which("go") is None:
        raise ToolchainMissing(
            f"sandbox binaries {', '.join(missing())} are not built and the Go toolchain is missing: "
            "install Go >= 1.26 (https://go.dev/doc/install) and run `sandbox/build.sh`"
        )
    env = {**os.environ, "MESHID_CACHE_DIR": str(home())}
    try:
        subprocess.run(["bash", str(BUILD_SCRIPT)], env=env, check=True, timeout=timeout_s,
                       stdout=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise StartFailed(f"sandbox build did not finish within {timeout_s:.0f} s") from exc
    except subprocess.CalledProcessError as exc:
        raise StartFailed(f"sandbox build failed (exit {exc.returncode}); its log is above") from exc
    if missing():
        raise StartFailed(f"sandbox build finished but {', '.join(missing())} are still missing")
    return bin_dir()


def kubectl() -> str:
    """Path of a kubectl (kwokctl needs one on PATH and would otherwise try to download it)."""
    found = shutil.which("kubectl")
    if found is None:
        raise ToolchainMissing("kubectl is not on PATH: install it (apt-get install kubectl, or a release binary)")
    return found
