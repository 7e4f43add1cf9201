"""Prefect tasks: one per guide stage, all made by `tasks.stage`, and the artifact sink."""
