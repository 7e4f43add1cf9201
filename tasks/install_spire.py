"""Prefect task of the `install-spire` stage."""

from meshid.stages.install_spire import run as body
from tasks.stage import stage_task

install_spire = stage_task("install-spire", body)
