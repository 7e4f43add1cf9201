"""Prefect task of the `apply-mesh-identity` stage."""

from meshid.stages.apply_mesh_identity import run as body
from tasks.stage import stage_task

apply_mesh_identity = stage_task("apply-mesh-identity", body)
