"""Prefect task of the fleet's `rollback` stage."""

from meshid.stages.rollback import run as body
from tasks.stage import stage_task

rollback = stage_task("rollback", body)
