"""Frozen inputs of the policy: nodes, foreign usage, jobs and settings, as the k8s layer observed them.

Everything here is plain data; `plan()` reads it and never mutates it. Times are float seconds on the same clock
as the `now` passed to `plan()` (the operator uses the epoch; the simulator its own clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from elastic_operator.policy.resources import Resources

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"
PREFER_NO_SCHEDULE = "PreferNoSchedule"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = NO_SCHEDULE  # NoSchedule | PreferNoSchedule | NoExecute


@dataclass(frozen=True)
class Toleration:
    """As in a pod spec: empty `key` with operator Exists tolerates everything; empty `effect` matches all."""

    key: str = ""
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.key
        return self.key == taint.key and self.value == taint.value


@dataclass(frozen=True)
class Node:
    name: str
    allocatable: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    schedulable: bool = True  # false when cordoned (spec.unschedulable)
    ready: bool = True


class Phase(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # includes starting and rescaling
    OTHER = "other"  # suspended, finished, failed: never planned, but its workers still hold capacity


def spans(nodes: Iterable[str]) -> int:
    """The number of distinct nodes in `nodes` (one entry per worker)."""
    return len(set(nodes))


@dataclass(frozen=True)
class Worker:
    """One worker pod of a job: its stable slot index and the node it is (or will be) on."""

    slot: int
    node: str


@dataclass(frozen=True)
class Job:
    key: str  # "namespace/name"
    per_worker: Resources
    min_workers: int = 1
    max_workers: int = 1
    priority: int = 0
    created: float = 0.0
    phase: Phase = Phase.QUEUED
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    workers: tuple[Worker, ...] = ()  # the current members (running jobs)
    leaving: tuple[Worker, ...] = ()  # told to exit, not yet gone: they still hold their node's capacity
    last_rescale: float | None = None  # last admit/grow/shrink/requeue; None if never
    cooldown_s: float | None = None  # None: Settings.cooldown_s
    may_shrink: bool = True
    may_requeue: bool = True
    # measured samples/s by placement: (workers, nodes they spanned). Keyed by placement, not by worker count alone,
    # because spreading a job over more nodes can cost more than its extra workers give (YOLOv3 in the Pollux
    # traces: 87 samples/s on 4 GPUs of one node, 44 on 2 + 2); see `throughput.Curve`
    throughput: Mapping[tuple[int, int], float] = field(default_factory=dict)
    queued_since: float | None = None  # when it (re-)entered the queue; None: `created`
    busy: bool = False  # a start or rescale is still in progress: its capacity counts, the policy leaves it alone
    attained_s: float = 0.0  # worker-seconds of service so far (every run, pauses included): least attained first
    rescale_pause_s: float | None = None  # measured pause of its latest rescale; None: Settings.rescale_pause_s
    remaining_samples: float | None = None  # work left, when the trainer reports it (same unit as throughput x s)

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def spans(self) -> int:
        """How many nodes its workers are on now (the second half of its throughput keys)."""
        return spans(w.node for w in self.workers)

    @property
    def waiting_since(self) -> float:
        return self.created if self.queued_since is None else self.queued_since


GrowMode = Literal["fair", "goodput"]
BackfillMode = Literal["off", "safe", "greedy"]


@dataclass(frozen=True)
class Settings:
    rescale_pause_s: float = 5.0  # expected pause of one rescale (bench-rescale measures it)
    cooldown_s: float = 120.0  # default per-job time between rescales; also the horizon a grow must pay off over
    aging_per_hour: float = 1.0  # priority points a queued job gains per hour of waiting (no starvation)
    grow_mode: GrowMode = "goodput"
    grow: bool = True  # give spare capacity to running jobs up to max_workers
    reclaim: bool = True  # shrink/requeue lower-or-equal priority jobs for the head of the queue
    backfill: BackfillMode = "safe"  # safe: only where the blocked head could not go, or onto requeueable work
    grow_margin: float = 0.0  # a grow must beat the pause by this fraction on top
    requeue_backoff_s: float = 60.0  # a requeued job waits this long before it may be admitted again
    default_serial_fraction: float = 0.05  # Amdahl fraction of the default speedup model (no measurements)
    min_payoff_horizon_s: float = 60.0  # a rescale must pay off over at least this long (see worth_rescaling)
    min_marginal_gain: float = 0.01  # goodput mode: a worker must add at least this fraction of the job's speed
    rebalance: bool = True  # move workers from jobs that gain little to jobs that gain much (needs grow)
    rebalance_margin: float = 0.5  # a moved worker must gain this fraction more than it loses
    first_on_one_node: bool = True  # a job without measurements grows at admission only as far as one node takes
    service_scale_s: float = 20000.0  # goodput: a job's gains weigh scale / (scale + attained_s); 0: all weigh 1
    # goodput: a job that reports its remaining work weighs scale / (scale + seconds it takes at its current speed)
    # instead (shortest remaining time first); 0: least attained service only
    remaining_scale_s: float = 5000.0


@dataclass(frozen=True)
class Snapshot:
    nodes: tuple[Node, ...]
    jobs: tuple[Job, ...]
    foreign_usage: Mapping[str, Resources] = field(default_factory=dict)  # node -> requests of pods not ours
    settings: Settings = Settings()

    def job(self, key: str) -> Job | None:
        return next((j for j in self.jobs if j.key == key), None)
