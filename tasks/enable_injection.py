"""Prefect task of the `enable-injection` stage."""

from meshid.stages.enable_injection import run as body
from tasks.stage import stage_task

enable_injection = stage_task("enable-injection", body)
