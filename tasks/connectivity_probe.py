"""Prefect task of the `connectivity-probe` stage."""

from meshid.stages.negative_probe import run as body
from tasks.stage import stage_task

connectivity_probe = stage_task("connectivity-probe", body)
