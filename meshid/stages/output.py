"""What a stage body reports while it runs: checks, what it touched, the HTTP exchange, transient calls, tables,
the versions it met."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from typing import Any

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

    def check(self, spec: checks.CheckSpec, *facts: Any, **named: Any) -> bool:
        """Record catalogue check `spec` as its evaluator judges the facts; return whether it passed."""
        result = spec.result(*facts, **named)
        self.add(result)
        return not result.failed

    def add(self, result: CheckResult) -> None:
        """Record a check result made elsewhere (a list of them, a check whose facts could not be observed)."""
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
