"""A rollout's saved progress, which lets a halted rollout resume, and where a fleet run keeps its files."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from meshid.errors import InputError
from meshid.fleet.results import TargetResult
from meshid.results import CheckResult

ROLLOUT_STATE = "rollout.json"


def fleet_dir(runs_dir: Path, fleet_run_id: str) -> Path:
    """Where a fleet run keeps its reports and rollout state."""
    return Path(runs_dir) / fleet_run_id


class RolloutState(BaseModel):
    """A rollout's progress, saved after every target: what completed (here or in the runs it resumed) and why it
    halted."""

    fleet_run_id: str
    resumed_from: str | None = None
    waves: list[list[str]]
    completed: list[str] = []
    results: list[TargetResult] = []
    checks: list[CheckResult] = []
    halted: str | None = None

    def save(self, runs_dir: Path) -> Path:
        """Write `<runs_dir>/<fleet run id>/rollout.json`."""
        path = fleet_dir(runs_dir, self.fleet_run_id) / ROLLOUT_STATE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, runs_dir: Path, fleet_run_id: str) -> RolloutState:
        """The state of an earlier rollout; InputError (field resume_from) when there is none."""
        path = fleet_dir(runs_dir, fleet_run_id) / ROLLOUT_STATE
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            raise InputError("resume_from", f"no readable rollout state at {path}",
                             "give the id of an earlier fleet rollout run (the directory under runs_dir holding "
                             f"{ROLLOUT_STATE})") from None
