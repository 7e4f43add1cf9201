"""Prefect task of the fleet's `plan` stage."""

from meshid.stages.plan import run as body
from tasks.stage import stage_task

plan = stage_task("plan", body)
