"""A helm chart repository on 127.0.0.1: packages every chart under `sandbox/charts/` and serves index.yaml + tgz.

Run as `python -m sandbox.chartrepo --ready-file FILE [--port P]`; it writes its URL into FILE once it serves, so
the guide's `helm repo add` / `helm upgrade --install --repo URL` work against it unchanged. The packages are built
once per content of `sandbox/charts/` and helm binary, under `<MESHID_HOME>/charts/<digest>/`, and shared (read
only) by every sandbox.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sandbox import binaries
from sandbox.processes import write_atomically

CHARTS_DIR = Path(__file__).with_name("charts")
HELM_TIMEOUT_S = 60


def package(out: Path, charts_dir: Path = CHARTS_DIR) -> list[Path]:
    """Package every chart folder into `out` and write its index.yaml (relative URLs); return the packages."""
    helm = str(binaries.bin_dir() / "helm")
    out.mkdir(parents=True, exist_ok=True)
    charts = sorted(p for p in charts_dir.iterdir() if (p / "Chart.yaml").is_file())
    for chart in charts:
        subprocess.run([helm, "package", str(chart), "--destination", str(out)], check=True,
                       timeout=HELM_TIMEOUT_S, capture_output=True, text=True)
    subprocess.run([helm, "repo", "index", str(out)], check=True, timeout=HELM_TIMEOUT_S,
                   capture_output=True, text=True)
    return sorted(out.glob("*.tgz"))


def digest(charts_dir: Path = CHARTS_DIR) -> str:
    """Hash of every file under `charts_dir` and of the helm binary that packages them."""
    h = hashlib.sha256(str((binaries.bin_dir() / "helm").resolve()).encode())
    for path in sorted(p for p in charts_dir.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(charts_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def packaged(charts_dir: Path = CHARTS_DIR) -> Path:
    """The folder with this content's packages and index.yaml, packaging them first when no sandbox did yet.

    Concurrent first calls each package into a temporary folder; the first rename wins and the others are dropped.
    """
    cache = binaries.home() / "charts"
    target = cache / digest(charts_dir)
    if (target / "index.yaml").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".packaging-", dir=cache))
    try:
        package(tmp, charts_dir)
        tmp.rename(target)
    except OSError as exc:
        if not (target / "index.yaml").is_file():
            raise OSError(f"cannot store the chart packages in {target} ({exc}); if that folder is left from an "
                          f"interrupted run, remove it and start the sandbox again") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
        sys.stderr.write("chartrepo: " + format % args + "\n")


def serve(out: Path, port: int, ready_file: Path) -> None:
    """Serve `out` on 127.0.0.1:port (0 = any free port) until killed; publish the URL in `ready_file`."""
    handler = functools.partial(_QuietHandler, directory=str(out))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        write_atomically(ready_file, url)
        server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the chart repository process."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.chartrepo", description=__doc__)
    parser.add_argument("--ready-file", type=Path, required=True, help="file that receives the URL once serving")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    args = parser.parse_args(argv)
    serve(packaged(), args.port, args.ready_file)


if __name__ == "__main__":
    main()
