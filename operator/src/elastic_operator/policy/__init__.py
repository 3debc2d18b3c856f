"""PURE: the scheduling policy. Frozen snapshot in, decisions with reasons out; no clock, no I/O, no randomness.

`plan(snapshot, now)` decides admissions (gangs at `min_workers`, per-node fit), reclaim for the head of the queue,
backfill, and growth into spare capacity with hysteresis; `apply_plan` is the state a plan leads to. See
docs/scheduling.md.
"""

from elastic_operator.policy.apply import apply_plan
from elastic_operator.policy.decision import CHANGES, Action, Decision, InputValue, Plan
from elastic_operator.policy.fit import eligible
from elastic_operator.policy.plan import plan
from elastic_operator.policy.queue import QueueEntry, effective_priority, order
from elastic_operator.policy.resources import CPU, GPU, MEMORY, Resources, parse_quantity
from elastic_operator.policy.snapshot import (
    NO_EXECUTE,
    NO_SCHEDULE,
    PREFER_NO_SCHEDULE,
    BackfillMode,
    GrowMode,
    Job,
    Node,
    Phase,
    Settings,
    Snapshot,
    Taint,
    Toleration,
    Worker,
)
from elastic_operator.policy.throughput import Curve, estimate, worth_rescaling

__all__ = [
    "CHANGES",
    "CPU",
    "GPU",
    "MEMORY",
    "NO_EXECUTE",
    "NO_SCHEDULE",
    "PREFER_NO_SCHEDULE",
    "Action",
    "BackfillMode",
    "Curve",
    "Decision",
    "GrowMode",
    "InputValue",
    "Job",
    "Node",
    "Phase",
    "Plan",
    "QueueEntry",
    "Resources",
    "Settings",
    "Snapshot",
    "Taint",
    "Toleration",
    "Worker",
    "apply_plan",
    "effective_priority",
    "eligible",
    "estimate",
    "order",
    "parse_quantity",
    "plan",
    "worth_rescaling",
]
