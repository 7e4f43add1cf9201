"""Prefect task of the `cleanup` stage."""

from meshid.stages.cleanup import run as body
from tasks.stage import stage_task

cleanup = stage_task("cleanup", body)
