"""Prefect task of the `preflight` stage."""

from meshid.stages.preflight import run as body
from tasks.stage import stage_task

preflight = stage_task("preflight", body)
