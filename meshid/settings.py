"""Process settings: `MeshidSettings` from `MESHID_*` environment variables and `.env`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meshid import DEFAULT_HOME, LIBRARY_LOGGER
from meshid.errors import input_error
from meshid.models import ProviderName, TrustDomain
from meshid.spiffe import DEFAULT_TRUST_DOMAIN

ENV_PREFIX = "MESHID_"


class MeshidSettings(BaseSettings):
    """Settings of the meshid process (not of one run: those are `meshid.models.GuideParams`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path(DEFAULT_HOME).expanduser(),
        description="meshid's home: the cache and sandboxes live under it.",
    )
    runs_dir: Path = Field(
        Path("runs"), description="Each run writes its diagnostics and reports in <runs_dir>/<run id>."
    )
    provider: ProviderName = Field(ProviderName.SANDBOX, description="Default cluster provider.")
    trust_domain: TrustDomain = Field(DEFAULT_TRUST_DOMAIN, description="Default SPIFFE trust domain.")
    helm_bin: str = Field("helm", min_length=1, description="helm executable (name on PATH or path).")
    api_timeout_s: float = Field(30.0, gt=0, description="Timeout of one Kubernetes API call, seconds.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Level of the library's loggers, `meshid.*` (case-insensitive)."
    )
    sandbox_tick_s: float = Field(
        5.0, gt=0, description="Emulator status tick, seconds, for sandboxes meshid starts."
    )

    @field_validator("home", "runs_dir")
    @classmethod
    def _expand_user(cls, path: Path) -> Path:
        return path.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, level: Any) -> Any:
        return level.upper() if isinstance(level, str) else level


def load_settings(**overrides: Any) -> MeshidSettings:
    """Settings from overrides, then `MESHID_*` variables, then `.env`; one InputError naming the variable.

    Also sets the library's log level: every entry point (the command line, each flow, the flow hooks) loads the
    settings, so MESHID_LOG_LEVEL holds wherever meshid runs, on a worker too.
    """
    try:
        settings = MeshidSettings(**overrides)
    except ValidationError as exc:
        raise input_error(exc, lambda loc: f"{ENV_PREFIX}{str(loc[0]).upper()}") from None
    logging.getLogger(LIBRARY_LOGGER).setLevel(settings.log_level)
    return settings
