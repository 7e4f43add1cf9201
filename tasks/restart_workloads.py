"""Prefect task of the `restart-workloads` stage."""

from meshid.stages.restart_workloads import run as body
from tasks.stage import stage_task

restart_workloads = stage_task("restart-workloads", body)
