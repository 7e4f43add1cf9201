"""`python -m flows.engine`: the process a Prefect worker starts for one run of meshid's deployments.

It is Prefect's own engine (`python -m prefect.engine`), run once Prefect and meshid's flows are imported with the
garbage collector paused (`meshid.collector`). prefect.yaml names it as the work pool's `command`: with a command of
its own, Prefect's process worker starts this one process per flow run; without one it starts a workspace supervisor,
which imports Prefect as well before it starts the engine (prefect/workers/process.py).
"""

from __future__ import annotations

import runpy

from meshid.collector import collector_paused


def main() -> None:
    """Import with the collector paused, then run Prefect's engine as `python -m prefect.engine` would."""
    with collector_paused():
        import prefect.engine  # noqa: F401
        import prefect.flow_engine  # noqa: F401
        # what every deployment's flow imports; not the entrypoints' own modules, which Prefect runs from their file
        # (prefect/utilities/importtools.py: load_script_as_module), so imported here they would run twice
        import flows.guide  # noqa: F401
    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
