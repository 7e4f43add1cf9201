"""Prefect task of the `cluster-start` stage."""

from meshid.stages.cluster_start import run as body
from tasks.stage import stage_task

cluster_start = stage_task("cluster-start", body)
