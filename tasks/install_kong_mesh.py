"""Prefect task of the `install-kong-mesh` stage."""

from meshid.stages.install_kong_mesh import run as body
from tasks.stage import stage_task

install_kong_mesh = stage_task("install-kong-mesh", body)
