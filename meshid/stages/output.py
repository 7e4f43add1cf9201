"""What a stage body reports while it runs: checks, what it touched, the HTTP exchange, transient calls, tables,
the versions it met."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from meshid import checks
from meshid.results import CheckResult, HttpExchange, Touched


@dataclass
class StageOutput:
    """Collected by one stage run; the runner turns it into a `StageResult`."""

    checks: list[CheckResult] = field(default_factory=list)
    touched: list[Touched] = field(default_factory=list)
    http: HttpExchange | None = None
    transient_calls: int = 0
    tables: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # name -> rows, e.g. a rollout's impact
    versions: dict[str, str] = field(default_factory=dict)  # component -> version, for the run's report
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, spec: checks.CheckSpec, ok: bool, message: str) -> bool:
        """Record the outcome of catalogue check `spec`; return `ok`."""
        self.add(checks.result(spec, ok, message))
        return ok

    def add(self, result: CheckResult) -> None:
        """Record a check result evaluated elsewhere (by the same function `meshid check` calls)."""
        with self._lock:
            self.checks.append(result)

    def touch(self, kind: str, namespace: str | None, name: str, action: str, detail: str = "") -> None:
        """Record a resource, pod, release or SPIFFE ID the stage acted on or observed."""
        with self._lock:
            self.touched.append(Touched(kind=kind, namespace=namespace, name=name, action=action, detail=detail))

    @property
    def blocked(self) -> bool:
        """True once a blocking check failed: the stage should stop and report."""
        return any(c.blocking for c in self.checks)
