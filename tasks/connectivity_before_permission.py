"""Prefect task of the `connectivity-before-permission` stage."""

from meshid.stages.connectivity import before_permission as body
from tasks.stage import stage_task

connectivity_before_permission = stage_task("connectivity-before-permission", body)
