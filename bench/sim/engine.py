"""The discrete-event loop: arrivals, completions and scheduling rounds, with `plan()` deciding every round.

Events, in time order: a job arrives (it joins the queue); a job completes (its GPUs are free at once, reassigned at
the next round); a scheduling round (every `interval_s`): build a `Snapshot` from the simulated cluster, call the
real `elastic_operator.policy.plan()`, and carry out its decisions. Between events every running job progresses at
its model throughput for its worker count and node spread, except during the restart penalty that follows every
start and every rescale. The policy sees only what the operator would: workers, priorities, times, and the
throughput measured so far at each placement (workers, nodes spanned) it has run at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.sim.bound import Model
from bench.sim.traces import TraceJob, app_model
from elastic_operator.policy import (
    GPU,
    Action,
    Decision,
    Job,
    Node,
    Phase,
    Resources,
    Settings,
    Snapshot,
    Worker,
    plan,
)


@dataclass(frozen=True)
class Cluster:
    nodes: int = 16
    gpus_per_node: int = 4
    interval_s: float = 60.0
    restart_penalty_s: float = 30.0


@dataclass(frozen=True)
class Policy:
    name: str
    settings: Settings
    bounds: Callable[[TraceJob], tuple[int, int]]  # (min, max) workers of a job
    elastic: bool = True  # may_shrink / may_requeue


@dataclass
class SimJob:
    trace: TraceJob
    model: Model
    min_workers: int
    max_workers: int
    work: float
    done: float = 0.0
    phase: Phase = Phase.QUEUED
    workers: list[Worker] = field(default_factory=list)
    next_slot: int = 0
    paused_until: float = 0.0
    last_rescale: float | None = None
    queued_since: float = 0.0
    measured: dict[tuple[int, int], float] = field(default_factory=dict)  # by (workers, nodes), as reported
    start: float | None = None
    finish: float | None = None
    rescales: int = 0
    attained: float = 0.0  # worker-seconds held so far, pauses included (what Tiresias calls attained service)

    @property
    def key(self) -> str:
        return f"sim/{self.trace.name}"

    @property
    def placement(self) -> tuple[int, int]:
        """(workers, nodes they span): what a throughput report is keyed by."""
        return len(self.workers), len({w.node for w in self.workers})

    def rate(self) -> float:
        return self.model.throughput(self.trace.batch, *self.placement)


@dataclass
class Result:
    policy: str
    jct: list[float]
    makespan: float
    gpu_seconds: float
    rescales: list[int]
    plan_seconds: float
    rounds: int
    capacity: int

    def summary(self) -> dict[str, float]:
        jct = sorted(self.jct)
        p99 = jct[min(len(jct) - 1, math.ceil(0.99 * len(jct)) - 1)]
        return {
            "jobs": len(jct),
            "avg_jct_s": round(sum(jct) / len(jct), 1),
            "p99_jct_s": round(p99, 1),
            "makespan_s": round(self.makespan, 1),
            "gpu_utilisation": round(self.gpu_seconds / (self.capacity * self.makespan), 4),
            "rescales_per_job": round(sum(self.rescales) / len(self.rescales), 2),
            "plan_ms_avg": round(1000 * self.plan_seconds / max(1, self.rounds), 3),
        }


def simulate(
    trace: list[TraceJob], policy: Policy, cluster: Cluster = Cluster(), model: Callable[[str], Model] = app_model
) -> Result:
    """Runs `trace` under `policy`; `model(app)` gives each application's throughput and work (the Pollux traces'
    unless a test passes its own)."""
    nodes = tuple(Node(f"node-{i:02d}", Resources({GPU: cluster.gpus_per_node})) for i in range(cluster.nodes))
    per_worker = Resources({GPU: 1})
    jobs: list[SimJob] = []
    for t in sorted(trace, key=lambda j: (j.arrival, j.name)):
        lo, hi = policy.bounds(t)
        m = model(t.app)
        jobs.append(SimJob(t, m, lo, hi, m.work(t.batch), queued_since=t.arrival))
    pending = list(jobs)  # not yet arrived, in arrival order
    arrived: list[SimJob] = []
    now = 0.0
    next_round = 0.0
    gpu_seconds = 0.0
    plan_seconds = 0.0
    rounds = 0
    settings = policy.settings

    def advance(to: float) -> None:
        nonlocal gpu_seconds
        for j in arrived:
            if j.phase is not Phase.RUNNING:
                continue
            gpu_seconds += len(j.workers) * (to - now)
            j.attained += len(j.workers) * (to - now)
            active_from = max(now, j.paused_until)
            if to > active_from:
                j.done += j.rate() * (to - active_from)

    def completion(j: SimJob) -> float:
        return max(now, j.paused_until) + max(0.0, j.work - j.done) / j.rate()

    while pending or any(j.finish is None for j in arrived):
        running = [j for j in arrived if j.phase is Phase.RUNNING]
        candidates: list[tuple[float, int, str]] = [(next_round, 2, "round")]
        if pending:
            candidates.append((pending[0].trace.arrival, 0, "arrive"))
        finishing = min(running, key=completion, default=None)
        if finishing is not None:
            candidates.append((completion(finishing), 1, "finish"))
        at, _, what = min(candidates)
        advance(at)
        now = at
        if what == "arrive":
            arrived.append(pending.pop(0))
        elif what == "finish":
            assert finishing is not None
            finishing.done = finishing.work
            finishing.finish = now
            finishing.phase = Phase.OTHER
            finishing.workers = []
        else:
            started = time.perf_counter()
            snapshot = _snapshot(nodes, per_worker, arrived, settings, policy.elastic)
            decisions = plan(snapshot, now)
            plan_seconds += time.perf_counter() - started
            rounds += 1
            _carry_out(decisions.changes, {j.key: j for j in arrived}, now, cluster)
            next_round = now + cluster.interval_s
    first = min(j.trace.arrival for j in jobs)
    makespan = max(j.finish or 0.0 for j in jobs) - first
    return Result(
        policy=policy.name,
        jct=[(j.finish or 0.0) - j.trace.arrival for j in jobs],
        makespan=makespan,
        gpu_seconds=gpu_seconds,
        rescales=[j.rescales for j in jobs],
        plan_seconds=plan_seconds,
        rounds=rounds,
        capacity=cluster.nodes * cluster.gpus_per_node,
    )


def _snapshot(
    nodes: tuple[Node, ...], per_worker: Resources, arrived: list[SimJob], settings: Settings, elastic: bool
) -> Snapshot:
    jobs = []
    for j in arrived:
        if j.finish is not None:
            continue
        jobs.append(
            Job(
                key=j.key,
                per_worker=per_worker,
                min_workers=j.min_workers,
                max_workers=j.max_workers,
                created=j.trace.arrival,
                phase=j.phase,
                workers=tuple(j.workers),
                last_rescale=j.last_rescale,
                may_shrink=elastic,
                may_requeue=elastic,
                throughput=dict(j.measured),
                queued_since=j.queued_since,
                attained_s=j.attained,
                remaining_samples=max(0.0, j.work - j.done),  # what its trainers report (epochs left x samples)
            )
        )
    return Snapshot(nodes=nodes, jobs=tuple(jobs), settings=settings)


def _carry_out(changes: tuple[Decision, ...], jobs: dict[str, SimJob], now: float, cluster: Cluster) -> None:
    for d in changes:
        j = jobs[d.job]
        if j.workers and j.phase is Phase.RUNNING:
            j.measured[j.placement] = j.rate()  # what its trainers reported at this placement
        if d.action is Action.REQUEUE:
            j.workers = []
            j.phase = Phase.QUEUED
            j.queued_since = now
        else:
            gone = set(d.remove_slots)
            j.workers = [w for w in j.workers if w.slot not in gone]
            for name in d.add_nodes:
                j.workers.append(Worker(j.next_slot, name))
                j.next_slot += 1
            j.phase = Phase.RUNNING
            j.paused_until = now + cluster.restart_penalty_s
            if d.action is Action.ADMIT and j.start is None:
                j.start = now
        if d.action is not Action.ADMIT:
            j.rescales += 1
        j.last_rescale = now
    for j in jobs.values():  # everything running reports its current throughput each round
        if j.phase is Phase.RUNNING and j.workers and now >= j.paused_until:
            j.measured[j.placement] = j.rate()
