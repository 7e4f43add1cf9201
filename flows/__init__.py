"""Prefect flows: `guide` (one cluster end to end) and `fleet` (clusters x trust domains, rollout waves)."""
