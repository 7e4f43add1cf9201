"""`python -m deployments.setup [--notify-block NAME]`: create what prefect.yaml cannot, idempotently.

- the process work pool `meshid` (prefect.yaml's deployments need it before `prefect deploy --all`);
- the global concurrency limit `meshid-fleet` (4 slots): how many targets all fleet runs together may work on at
  once, one slot per target (the per-cluster locks `meshid-cluster-*` are created by the fleet flow itself);
- the automation "meshid crash zombie runs": a flow run that sent heartbeats and then fell silent for
  ZOMBIE_AFTER (its process or its worker died unseen, e.g. SIGKILL or a lost machine) is set Crashed. This is
  Prefect's own zombie detection for self-hosted servers (docs.prefect.io, "Detect zombie flows"): the server has no
  service for it, only this proactive trigger on `prefect.flow-run.heartbeat` events. Worker-run flows send one every
  PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (default 180, minimum 30: prefect/settings/models/flows.py,
  MINIMUM_HEARTBEAT_INTERVAL in prefect/flow_engine.py); ZOMBIE_AFTER is three of the stack's 30 s heartbeats, and
  the server evaluates proactive triggers every 5 s (PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY), so a run whose
  worker is killed is Crashed 60 to 95 s after it died;
- the automations "meshid nightly failed" (a nightly-validation run Failed or Crashed) and "meshid nightly
  recovered" (a nightly run Completed after a failure), which notify through a notification block the user made.

Existing pools and limits are kept as they are (tuned in the UI, say); automations are rewritten to match this file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from prefect.workers.process import ProcessWorker

from flows.fleet import FLEET_LIMIT

POOL = "meshid"
FLEET_LIMIT_SLOTS = 4
NIGHTLY = "nightly-validation"
FAILED_AUTOMATION = "meshid nightly failed"
RECOVERED_AUTOMATION = "meshid nightly recovered"
RECOVERY_WINDOW = timedelta(days=7)
ZOMBIE_AUTOMATION = "meshid crash zombie runs"
HEARTBEAT_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the stack's workers (deployments/stack.py): Prefect's minimum
ZOMBIE_AFTER = timedelta(seconds=3 * HEARTBEAT_S)
ENDS = {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed"}
BAD_ENDS = {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
BODY = ("Flow run {{ flow_run.name }} of deployment {{ deployment.name }} is {{ flow_run.state.name }}: "
        "{{ flow_run.state.message }}\n{{ flow_run|ui_url }}")
HOW_TO_NOTIFY = (
    "create a notification block, e.g.\n"
    "  .venv/bin/python -c \"from prefect.blocks.notifications import SlackWebhook; "
    "SlackWebhook(url='https://hooks.slack.com/services/...').save('meshid-alerts')\"\n"
    "(or in the UI: Blocks > Add > Slack Webhook / Custom Webhook), then run\n"
    "  .venv/bin/python -m deployments.setup --notify-block meshid-alerts"
)


def ensure_pool(client: SyncPrefectClient) -> str:
    """Create the process work pool unless it exists; an existing pool of another type is an error."""
    try:
        pool = client.read_work_pool(POOL)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process",
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
        return f"work pool {POOL} (process): created"
    if pool.type != "process":
        raise SystemExit(f"work pool {POOL} exists with type {pool.type!r}; meshid needs a process pool: "
                         f"delete it (prefect work-pool delete {POOL}) and run this again")
    return f"work pool {POOL} (process): exists"


def ensure_limit(client: SyncPrefectClient, name: str, slots: int) -> str:
    """Create the global concurrency limit unless it exists (an existing limit keeps its slots)."""
    try:
        limit = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
        return f"global concurrency limit {name} ({slots}): created"
    return f"global concurrency limit {name} ({limit.limit}): exists"


def notification_block_id(client: SyncPrefectClient, ref: str) -> UUID:
    """The id of the notification block `NAME` or `TYPE-SLUG/NAME` (e.g. `slack-webhook/meshid-alerts`)."""
    slug, _, name = ref.rpartition("/")
    blocks = [d for d in client.read_block_documents(include_secrets=False)
              if d.block_schema and "notify" in d.block_schema.capabilities and d.block_type]
    found = [d for d in blocks if d.name == name and slug in ("", d.block_type.slug)]
    if len(found) == 1:
        return found[0].id
    known = ", ".join(sorted(f"{d.block_type.slug}/{d.name}" for d in blocks)) or "none"
    problem = "is ambiguous: give TYPE-SLUG/NAME" if found else "was not found"
    raise SystemExit(f"notification block {ref!r} {problem} (notification blocks: {known}); {HOW_TO_NOTIFY}")


def automations(block_id: UUID) -> list[AutomationCore]:
    """The nightly failure and recovery notifications."""
    runs = {"prefect.resource.id": "prefect.flow-run.*"}
    nightly = {"prefect.resource.role": "deployment", "prefect.resource.name": NIGHTLY}

    def notify(subject: str) -> list[SendNotification]:
        return [SendNotification(block_document_id=block_id, subject=subject, body=BODY)]

    return [
        AutomationCore(name=FAILED_AUTOMATION, description=f"notify when a {NIGHTLY} run fails or crashes",
                       trigger=EventTrigger(expect=BAD_ENDS, match=runs, match_related=nightly, threshold=1),
                       actions=notify(f"{NIGHTLY} {{{{ flow_run.state.name }}}}")),
        AutomationCore(name=RECOVERED_AUTOMATION, description=f"notify when a {NIGHTLY} run completes within "
                       f"{RECOVERY_WINDOW.days} days of a failed or crashed one",
                       trigger=EventTrigger(after=BAD_ENDS, expect={"prefect.flow-run.Completed"}, match=runs,
                                            match_related=nightly, threshold=1, within=RECOVERY_WINDOW),
                       actions=notify(f"{NIGHTLY} recovered")),
    ]


def zombie_automation() -> AutomationCore:
    """Crash a flow run whose heartbeats stopped for ZOMBIE_AFTER before it ended (see the module docstring)."""
    heartbeat = "prefect.flow-run.heartbeat"
    return AutomationCore(
        name=ZOMBIE_AUTOMATION, description=f"set Crashed a flow run that sent no heartbeat for "
        f"{ZOMBIE_AFTER.seconds} s and did not end: its process or worker died unseen",
        trigger=EventTrigger(after={heartbeat}, expect={heartbeat, *ENDS},
                             match={"prefect.resource.id": "prefect.flow-run.*"}, for_each={"prefect.resource.id"},
                             posture=Posture.Proactive, threshold=1, within=ZOMBIE_AFTER),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=f"no heartbeat for {ZOMBIE_AFTER.seconds} s: "
                                    "the run's process or its worker died")])


def ensure_automation(client: SyncPrefectClient, automation: AutomationCore) -> str:
    """Create the automation, or rewrite the one of that name."""
    existing = client.read_automations_by_name(automation.name)
    if existing:
        # update_automation sends only the fields set explicitly: a round trip sets them all (posture, type...) but
        # owner_resource, which the update endpoint rejects
        full = AutomationCore.model_validate(automation.model_dump(exclude={"owner_resource"}))
        client.update_automation(existing[0].id, full)
        return f"automation {automation.name!r}: updated"
    client.create_automation(automation)
    return f"automation {automation.name!r}: created"


def setup(notify_block: str | None) -> list[str]:
    """Everything above, against the API of PREFECT_API_URL; returns one line per object."""
    with get_client(sync_client=True) as client:
        lines = [ensure_pool(client), ensure_limit(client, FLEET_LIMIT, FLEET_LIMIT_SLOTS),
                 ensure_automation(client, zombie_automation())]
        if notify_block is None:
            return lines + [f"automations {FAILED_AUTOMATION!r} and {RECOVERED_AUTOMATION!r}: SKIPPED, no "
                            f"--notify-block given; to add them, {HOW_TO_NOTIFY}"]
        block_id = notification_block_id(client, notify_block)
        return lines + [ensure_automation(client, a) for a in automations(block_id)]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: print what was created, kept or skipped."""
    parser = argparse.ArgumentParser(prog="python -m deployments.setup", description=__doc__.splitlines()[0])
    parser.add_argument("--notify-block", metavar="NAME",
                        help="notification block (NAME or TYPE-SLUG/NAME) for the nightly failed/recovered automations")
    args = parser.parse_args(argv)
    for line in setup(args.notify_block):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
