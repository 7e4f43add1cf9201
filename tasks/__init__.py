"""Prefect tasks, one module per guide stage; each is a thin wrapper of a `meshid.stages` body."""
