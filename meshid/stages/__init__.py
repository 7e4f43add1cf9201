"""The guide's stages, one module each: the logic, no Prefect. `registry` holds one record per stage and the graph
each run mode takes them in."""
