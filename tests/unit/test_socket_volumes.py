"""MID050: every live demo pod carries the SPIRE agent socket volume, and at least one demo pod is live."""

from __future__ import annotations

from meshid.checks import MID050
from meshid.stages.restart_workloads import SOCKET_VOLUME


def _pod(name: str, volume: bool, deleting: bool = False) -> dict:
    meta = {"name": name, **({"deletionTimestamp": "2026-12-04T08:00:00Z"} if deleting else {})}
    volumes = [{"name": SOCKET_VOLUME, "csi": {"driver": "csi.spiffe.io"}}] if volume else [{"name": "tmp"}]
    return {"metadata": meta, "spec": {"volumes": volumes}}


def test_live_pods_with_the_socket_pass_and_terminating_ones_without_it_do_not_count():
    result = MID050.result([_pod("kv-new", True), _pod("kv-old", False, deleting=True)])
    assert not result.failed and result.message == f"1 demo pods carry {SOCKET_VOLUME}"


def test_a_live_pod_without_the_socket_is_named():
    result = MID050.result([_pod("kv-new", True), _pod("demo-app-old", False)])
    assert result.failed and result.message == f"pods without {SOCKET_VOLUME}: demo-app-old"


def test_only_terminating_pods_is_no_proof():
    result = MID050.result([_pod("kv-old", True, deleting=True)])
    assert result.failed and result.message == "no demo pod that is not being deleted"
    assert MID050.result([]).failed
