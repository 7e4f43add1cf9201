"""Prefect task of the `connectivity-after-permission` stage."""

from meshid.stages.connectivity import after_permission as body
from tasks.stage import stage_task

connectivity_after_permission = stage_task("connectivity-after-permission", body)
