"""Prefect task of the `apply-demo` stage."""

from meshid.stages.apply_demo import run as body
from tasks.stage import stage_task

apply_demo = stage_task("apply-demo", body)
