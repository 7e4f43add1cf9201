"""Fleet runs, without Prefect: what `flows/fleet.py` runs and `flows/dispatch.py` dispatches.

- `spec`: the fleet file (FleetSpec, its targets, waves and modes), its validation and loading;
- `waves`: a rollout's waves, the failures a wave may have, and its check (MID080);
- `results`: a target's result (TargetResult, StageLine) and the fleet's report (FleetReport);
- `clusters`: which cluster a target is (`cluster_key`), its lock's name (`lock_name`), the kubeconfig checks;
- `scheduling`: the jobs, the circuit breaker and the scheduler (concurrency, one job per cluster, fail-fast);
- `rollout_state`: a rollout's saved progress for a resume, and a fleet run's directory.

The fleet's parent never reads a target's kubeconfig: it tells clusters apart by `cluster_key` (what the target
names), and whoever touches a cluster names its lock with `lock_name` (what the kubeconfig points at).
"""
