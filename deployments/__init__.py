"""What prefect.yaml cannot declare: the work pool, global concurrency limits and notification automations."""
