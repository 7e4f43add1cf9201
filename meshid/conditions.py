"""Pure predicates over API objects (plain dicts) for waits: each returns (done, what was seen)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


def condition(obj: Obj, kind: str) -> Obj | None:
    """The status condition of type `kind`, or None."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def is_true(obj: Obj, kind: str) -> bool:
    """Whether condition `kind` has status "True"."""
    found = condition(obj, kind)
    return found is not None and found.get("status") == "True"


def conditions_text(obj: Obj) -> str:
    """Conditions as `Type=Status (Reason)` joined by commas, or "no conditions"."""
    conds = obj.get("status", {}).get("conditions", []) or []
    return ", ".join(f"{c.get('type')}={c.get('status')}" + (f" ({c['reason']})" if c.get("reason") else "")
                     for c in conds) or "no conditions"


def live(objs: list[Obj]) -> list[Obj]:
    """Objects not being deleted."""
    return [o for o in objs if not o["metadata"].get("deletionTimestamp")]


def pods_ready(min_count: int = 1) -> Callable[[list[Obj]], tuple[bool, str]]:
    """At least `min_count` live pods, all Running and Ready (what `kubectl wait --for=condition=ready` checks)."""

    def check(pods: list[Obj]) -> tuple[bool, str]:
        pods = live(pods)
        ready = [p for p in pods if p.get("status", {}).get("phase") == "Running" and is_true(p, "Ready")]
        seen = ", ".join(f"{p['metadata']['name']}={p.get('status', {}).get('phase', '?')}"
                         f"{'/Ready' if p in ready else ''}" for p in pods) or "no pods"
        return len(pods) >= min_count and len(ready) == len(pods), seen

    return check


def named(name: str, inner: Callable[[Obj], tuple[bool, str]]) -> Callable[[list[Obj]], tuple[bool, str]]:
    """Apply `inner` to the object called `name` in a list."""

    def check(objs: list[Obj]) -> tuple[bool, str]:
        obj = next((o for o in objs if o["metadata"]["name"] == name), None)
        return (False, f"{name} not found") if obj is None else inner(obj)

    return check


def daemonset_ready(ds: Obj) -> tuple[bool, str]:
    """Every scheduled pod of a DaemonSet is ready and up to date."""
    s = ds.get("status", {})
    want = s.get("desiredNumberScheduled", 0)
    seen = f"{s.get('numberReady', 0)}/{want} ready, {s.get('updatedNumberScheduled', 0)} updated"
    return want > 0 and s.get("numberReady", 0) == want and s.get("updatedNumberScheduled", 0) == want, seen


def has_volume(pod: Obj, volume: str) -> bool:
    """Whether the pod spec has a volume of that name."""
    return any(v.get("name") == volume for v in pod.get("spec", {}).get("volumes", []) or [])


def crds_established(group: str, count: int) -> Callable[[list[Obj]], tuple[bool, str]]:
    """At least `count` CRDs of API group `group`, all Established."""

    def check(crds: list[Obj]) -> tuple[bool, str]:
        mine = [c for c in crds if c.get("spec", {}).get("group") == group]
        done = [c["metadata"]["name"] for c in mine if is_true(c, "Established")]
        return len(mine) >= count and len(done) == len(mine), f"{len(done)}/{len(mine)} {group} CRDs Established"

    return check
