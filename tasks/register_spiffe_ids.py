"""Prefect task of the `register-spiffe-ids` stage."""

from meshid.stages.register_spiffe_ids import run as body
from tasks.stage import stage_task

register_spiffe_ids = stage_task("register-spiffe-ids", body)
