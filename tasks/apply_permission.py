"""Prefect task of the `apply-permission` stage."""

from meshid.stages.apply_permission import run as body
from tasks.stage import stage_task

apply_permission = stage_task("apply-permission", body)
