"""`<state_dir>/emulator.json`: the emulator's status tick and fault knobs, re-read whenever the file changes."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

CONFIG_FILE = "emulator.json"
APPLIED_FILE = "emulator.applied"  # the emulator writes here the config generation it has acted on
log = logging.getLogger("emulator.config")


class EmulatorConfig(BaseModel):
    """Schema of emulator.json; `sandbox.lifecycle.set_faults` merges knobs into it and validates with this model."""

    model_config = ConfigDict(extra="forbid")

    tick_s: float = Field(5.0, gt=0, le=60, description="period of the status writers (the real control plane: 5 s)")
    convergence_delay_s: float = Field(
        0.0, ge=0, le=600, description="extra delay before identity and permission changes reach the data plane")
    spire_server_not_ready: bool = Field(
        False, description="spire-server-0 turns not ready: its webhook fails closed and no SPIRE entries reconcile")
    drop_port_forward_share: float = Field(
        0.0, ge=0, le=1, description="share of data-plane connections closed without an answer")
    transient_503_share: float = Field(0.0, ge=0, le=1, description="share of demo-app answers that are HTTP 503")
    control_plane_crash_loop: bool = Field(
        False, description="control-plane pods crash-loop: not ready, restarts rise, webhooks fail closed")
    csi_driver_delay_s: float = Field(
        0.0, ge=0, le=3600, description="the SPIFFE CSI driver's node plugin registers this long after its pod is ready")
    csi_driver_absent: bool = Field(
        False, description="the SPIFFE CSI driver's pods never turn ready and its node plugin never registers")
    no_default_storageclass: bool = Field(
        False, description="the sandbox's default StorageClass is removed (restored when false)")
    registration_missing_namespaces: list[str] = Field(
        default_factory=list, description="SPIRE creates no registration entries for pods of these namespaces")
    generation: int = Field(
        0, ge=0, description="bumped by every set_faults; a round of the world acts on it, then the emulator writes "
                             "it to emulator.applied, so a knob set is in force when set_faults returns")
    svid_trust_domain: str = Field(
        "", pattern=r"^[a-z0-9._-]*$",
        description="SVIDs the agents hand out carry this trust domain instead of SPIRE's own ('' = SPIRE's own)")


class ConfigSource:
    """The current config, re-read whenever the file's mtime changes (a stat per access, so knobs act at once)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime = -1.0
        self._lock = threading.Lock()
        self._current = EmulatorConfig()

    @property
    def current(self) -> EmulatorConfig:
        """The config as of the file now (the last readable version if the file is broken or missing)."""
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            return self._current
        with self._lock:
            if mtime != self._mtime:
                self._mtime = mtime
                self._load()
            return self._current

    def _load(self) -> None:
        try:
            loaded = EmulatorConfig.model_validate(json.loads(self._path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self._path, exc)
            return
        if loaded != self._current:
            log.info("config: %s", loaded.model_dump())
        self._current = loaded
