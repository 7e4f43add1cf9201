"""Diagnostics collected when a stage fails: events, pod status and logs, custom resources' status, helm releases.

Every step is guarded (a failure is recorded in `errors` and the rest still runs), every call has a timeout (the
Cluster's and helm's own), and every file and the markdown summary pass through `meshid.redact.redact`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from meshid.errors import MeshidError
from meshid.helm import Helm
from meshid.kube import ApiError, Cluster, Obj
from meshid.redact import redact
from meshid.reports import markdown_table

LOG_TAIL_LINES = 200
HELM_STATUS_TIMEOUT_S = 30
SUMMARY_EVENTS = 10  # warning events per namespace in the markdown summary
SUMMARY_STATUS_CHARS = 300


@dataclass
class Diagnostics:
    """What `collect` gathered: the files it wrote, what it could not collect, and summaries for `markdown`."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pods: dict[str, list[Obj]] = field(default_factory=dict)  # namespace -> pod_summary()s
    events: dict[str, list[Obj]] = field(default_factory=dict)  # namespace -> event_summary()s, oldest first
    resources: dict[str, list[Obj]] = field(default_factory=dict)  # kind -> trimmed objects
    releases: list[Obj] = field(default_factory=list)

    def guard(self, step: str, fn: Callable[..., None], *args: Any) -> None:
        """Run one step; record its failure instead of raising it."""
        try:
            fn(*args)
        except Exception as exc:  # diagnostics must never stop halfway
            detail = str(exc) if isinstance(exc, MeshidError) else f"{type(exc).__name__}: {exc}"
            self.errors.append(redact(f"{step}: {detail}"))

    def write(self, relative: str, text: str) -> None:
        """Write redacted text to a file under `out_dir`."""
        self._store(relative, redact(text))

    def write_json(self, relative: str, data: Any) -> None:
        """Write redacted JSON to a file under `out_dir`."""
        self.write(relative, json.dumps(data, indent=2, default=str) + "\n")

    def write_summary(self) -> None:
        """Write `markdown()` to summary.md (it is redacted and escaped already: redacting twice would undo the
        escaping of `<redacted>`)."""
        self._store("summary.md", self.markdown())

    def _store(self, relative: str, text: str) -> None:
        path = self.out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files.append(path)

    def markdown(self) -> str:
        """A readable summary (a Prefect markdown artifact): per namespace the pods that are not running and ready
        and the last warning events, then the custom resources' conditions, helm releases, and what is missing."""
        parts = [f"## Diagnostics\n\nFiles (events, pods, logs, resources, helm releases): `{self.out_dir}`"]
        for ns in sorted(set(self.pods) | set(self.events)):
            parts += [f"### Namespace `{ns}`", _pods_markdown(self.pods.get(ns)), _events_markdown(self.events.get(ns))]
        rows = [row for kind, objs in self.resources.items() for obj in objs for row in _condition_rows(kind, obj)]
        if rows:
            parts += ["### Custom resources",
                      markdown_table(["kind", "name", "condition", "status", "reason", "message"], rows)]
        if self.releases:
            parts += ["### Helm releases", markdown_table(
                ["release", "namespace", "status", "revision", "chart"],
                [[r["name"], r["namespace"], r.get("status", "not installed"), r.get("revision"), r.get("chart")]
                 for r in self.releases])]
        if self.errors or self.notes:
            lines = [f"- {note}" for note in self.notes] + [f"- **could not collect** {error}" for error in self.errors]
            parts += ["### Notes", html.escape(redact("\n".join(lines)), quote=False)]
        return "\n\n".join(parts) + "\n"


def collect(cluster: Cluster, helm: Helm | None, namespaces: list[str], releases: list[tuple[str, str]],
            out_dir: Path, custom_kinds: list[tuple[str, str]]) -> Diagnostics:
    """Gather diagnostics into files under `out_dir` (events-<ns>.txt, pods-<ns>.json, logs/<ns>/<pod>-<c>.log,
    resources/<kind>.json, helm-<release>.json, summary.md); one failing step never stops the others."""
    diag = Diagnostics(out_dir)
    for ns in namespaces:
        diag.guard(f"events in {ns}", _events, cluster, diag, ns)
        diag.guard(f"pods in {ns}", _pods, cluster, diag, ns)
    for api_version, kind in custom_kinds:
        diag.guard(f"{kind} ({api_version})", _resources, cluster, diag, api_version, kind)
    for release, ns in releases:
        if helm is None:
            diag.notes.append(f"helm release {ns}/{release}: no helm for this cluster")
        else:
            diag.guard(f"helm status {ns}/{release}", _release, helm, diag, release, ns)
    diag.guard("summary", diag.write_summary)
    return diag


# --- collection steps ------------------------------------------------------------------------------------------


def _events(cluster: Cluster, diag: Diagnostics, ns: str) -> None:
    items, _ = cluster.list("v1", "Event", ns)
    events = sorted((event_summary(e) for e in items), key=lambda e: _when(e["time"]))
    diag.events[ns] = events
    diag.write(f"events-{_safe(ns)}.txt", "".join(_event_line(e) + "\n" for e in events))


def _pods(cluster: Cluster, diag: Diagnostics, ns: str) -> None:
    items, _ = cluster.list("v1", "Pod", ns)
    if not items and cluster.get("v1", "Namespace", ns) is None:
        diag.notes.append(f"namespace {ns} does not exist")
        return
    pods = [pod_summary(p) for p in items]
    diag.pods[ns] = pods
    diag.write_json(f"pods-{_safe(ns)}.json", pods)
    for pod in pods:
        for container in pod["containers"]:
            if _started(container):
                diag.guard(f"logs of {ns}/{pod['name']}/{container['name']}", _logs, cluster, diag, ns, pod["name"],
                           container["name"])


def _logs(cluster: Cluster, diag: Diagnostics, ns: str, pod: str, container: str) -> None:
    text = cluster.pod_logs(ns, pod, container, tail_lines=LOG_TAIL_LINES)
    diag.write(f"logs/{_safe(ns)}/{_safe(pod)}-{_safe(container)}.log", text)


def _resources(cluster: Cluster, diag: Diagnostics, api_version: str, kind: str) -> None:
    try:
        items, _ = cluster.list(api_version, kind)
    except ApiError as exc:
        if exc.status != 404:
            raise
        diag.notes.append(f"{kind} ({api_version}): not served by this cluster ({exc.detail})")
        return
    objects = [_trim(o) for o in items]
    diag.resources[kind] = objects
    diag.write_json(f"resources/{_safe(kind)}.json", objects)


def _release(helm: Helm, diag: Diagnostics, release: str, ns: str) -> None:
    found = helm.status(release, ns, timeout_s=HELM_STATUS_TIMEOUT_S)
    data = {**asdict(found), "installed": True} if found else {"name": release, "namespace": ns, "installed": False}
    diag.releases.append(data)
    diag.write_json(f"helm-{_safe(release)}.json", data)


# --- summaries -------------------------------------------------------------------------------------------------


def pod_summary(pod: Obj) -> Obj:
    """Phase, node, conditions, containers (ready, restarts, state), volume names of one pod."""
    spec, status = pod.get("spec", {}), pod.get("status", {})
    containers = []
    for init, spec_key, status_key in ((True, "initContainers", "initContainerStatuses"),
                                       (False, "containers", "containerStatuses")):
        seen = {s["name"]: s for s in status.get(status_key) or []}
        for c in spec.get(spec_key) or []:
            s = seen.get(c["name"], {})
            containers.append({"name": c["name"], "init": init, "image": c.get("image"), "ready": s.get("ready", False),
                               "restartCount": s.get("restartCount", 0), "state": s.get("state", {}),
                               "lastState": s.get("lastState", {})})
    return {
        "name": pod["metadata"]["name"], "phase": status.get("phase", "Unknown"), "node": spec.get("nodeName"),
        "reason": status.get("reason"), "message": status.get("message"),
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                       for c in status.get("conditions") or []],
        "containers": containers, "volumes": [v["name"] for v in spec.get("volumes") or []],
    }


def pod_problem(pod: Obj) -> str | None:
    """Why a summarised pod is not running and ready (None when it is, or when it completed)."""
    if pod["phase"] == "Succeeded":
        return None
    problems = [p for c in pod["containers"] if (p := _container_problem(c))]
    if pod["phase"] == "Running" and not problems:
        return None
    unmet = [f"{c['type']}: {c['message'] or c['reason']}" for c in pod["conditions"]
             if c["status"] != "True" and (c["message"] or c["reason"])]
    unscheduled = [u for u in unmet if u.startswith("PodScheduled:")]  # no node: its containers never start
    return "; ".join(unscheduled or problems or unmet or [pod["message"] or pod["reason"] or pod["phase"]])


def _container_problem(container: Obj) -> str | None:
    state = container["state"]
    if (container["init"] and state.get("terminated", {}).get("exitCode") == 0) or (
            not container["init"] and container["ready"]):
        return None
    for key in ("waiting", "terminated"):
        if key in state:
            detail = state[key].get("message") or ""
            return f"{container['name']} {key} {state[key].get('reason', '')}" + (f": {detail}" if detail else "")
    return f"{container['name']} running, not ready" if "running" in state else f"{container['name']} not started"


def _started(container: Obj) -> bool:
    return bool({"running", "terminated"} & set(container["state"])) or "terminated" in container["lastState"]


def event_summary(event: Obj) -> Obj:
    """Time, type, reason, object, message and count of one core/v1 Event."""
    obj = event.get("involvedObject", {})
    return {
        "time": event.get("eventTime") or event.get("lastTimestamp") or event.get("firstTimestamp")
        or event.get("metadata", {}).get("creationTimestamp") or "",
        "type": event.get("type", ""), "reason": event.get("reason", ""),
        "object": f"{obj.get('kind', '')}/{obj.get('name', '')}", "message": (event.get("message") or "").strip(),
        "count": event.get("count") or 1,
    }


def _when(timestamp: str) -> datetime:
    """An API timestamp (with or without microseconds) as a datetime; unparsable ones sort first."""
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError:
        parsed = datetime.min
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _event_line(e: Obj) -> str:
    count = f" (x{e['count']})" if e["count"] > 1 else ""
    return f"{e['time']} {e['type']} {e['reason']} {e['object']}: {e['message']}{count}"


def _trim(obj: Obj) -> Obj:
    meta = obj.get("metadata", {})
    keep = ("name", "namespace", "labels", "generation", "creationTimestamp", "deletionTimestamp")
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {k: meta[k] for k in keep if k in meta}, "spec": obj.get("spec"), "status": obj.get("status")}


def _condition_rows(kind: str, obj: Obj) -> list[list[Any]]:
    meta, status = obj["metadata"], obj.get("status") or {}
    name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    conditions = status.get("conditions") or []
    if not conditions:
        text = json.dumps(status, sort_keys=True)[:SUMMARY_STATUS_CHARS] if status else "no status"
        return [[kind, name, "status", "", "", text]]
    return [[kind, name, c.get("type"), c.get("status"), c.get("reason"), c.get("message")] for c in conditions]


def _pods_markdown(pods: list[Obj] | None) -> str:
    if pods is None:
        return "Pods: not collected."
    bad = [(p, problem) for p in pods if (problem := pod_problem(p))]
    if not bad:
        return f"All {len(pods)} pods running and ready." if pods else "No pods."
    rows = [[p["name"], p["phase"], problem, sum(c["restartCount"] for c in p["containers"])] for p, problem in bad]
    return f"**Pods not running and ready** ({len(bad)} of {len(pods)})\n\n" + markdown_table(
        ["pod", "phase", "problem", "restarts"], rows)


def _events_markdown(events: list[Obj] | None) -> str:
    warnings = [e for e in events or [] if e["type"] == "Warning"][-SUMMARY_EVENTS:]
    if not warnings:
        return "No warning events." if events is not None else "Events: not collected."
    return "**Last warning events**\n\n" + markdown_table(
        ["time", "object", "reason", "message", "count"],
        [[e["time"], e["object"], e["reason"], e["message"], e["count"]] for e in warnings])


def _safe(name: str) -> str:
    """A name usable as a file name."""
    return re.sub(r"[^\w.-]", "_", name)
