"""A lower bound on the average JCT that any policy can reach in this simulator, from the same throughput model.

Why: the targets (1.5x better than static, within 1.2x of Pollux) are only meaningful where some policy could meet
them. Every policy here keeps the trace's batch size, so a job's work and its throughput at each placement are fixed
by the model; what a policy chooses is only when, and on how many GPUs over how many nodes, each job runs. Two
relaxations bound what that choice can achieve, and the larger of the two is reported:

- alone: each job on an empty cluster from the first scheduling round at or after its arrival (the simulator sees
  arrivals only then), paying one restart penalty, at its fastest placement (any n <= cluster GPUs on any k nodes
  that hold them). No policy finishes a job sooner; the bound is the average of these times.
- capacity: the cluster as one machine of C GPUs shared at will. A job needs at least its least GPU-seconds (over
  placements, the start's restart penalty included), so it needs at least that / C of the machine's time. Any real
  schedule is a feasible schedule of this preemptive single machine with release dates, on which shortest remaining
  processing time first is optimal for the sum of completion times. This bound matters when the cluster is busy.

Both ignore every cost the other counts (the alone bound ignores other jobs, the capacity bound ignores that a job
cannot use the whole cluster), so the truth lies above the larger, and how far above is unknown.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bench.sim.traces import TraceJob


class Model(Protocol):
    def throughput(self, batch: int, n: int, k: int) -> float: ...

    def work(self, batch: int) -> float: ...


class ClusterShape(Protocol):
    @property
    def nodes(self) -> int: ...

    @property
    def gpus_per_node(self) -> int: ...

    @property
    def interval_s(self) -> float: ...

    @property
    def restart_penalty_s(self) -> float: ...


@dataclass(frozen=True)
class Best:
    seconds: float  # restart penalty + work at the fastest placement
    gpu_seconds: float  # least n x (penalty + work / throughput) over placements


@dataclass(frozen=True)
class Bound:
    alone_s: float  # average JCT if every job ran alone at its fastest placement from its first round
    capacity_s: float  # average JCT of SRPT on one machine of the cluster's GPUs, each job its least GPU-seconds

    @property
    def avg_jct_s(self) -> float:
        return max(self.alone_s, self.capacity_s)


def best_placement(model: Model, batch: int, cluster: ClusterShape) -> Best:
    """The fastest time and the least GPU-seconds of one job over every placement the cluster allows."""
    fastest = math.inf
    cheapest = math.inf
    penalty = cluster.restart_penalty_s
    work = model.work(batch)
    for n in range(1, cluster.nodes * cluster.gpus_per_node + 1):
        for k in range(math.ceil(n / cluster.gpus_per_node), min(n, cluster.nodes) + 1):
            rate = model.throughput(batch, n, k)
            if rate <= 0:
                continue
            seconds = penalty + work / rate
            fastest = min(fastest, seconds)
            cheapest = min(cheapest, n * seconds)
    return Best(fastest, cheapest)


def first_round(arrival: float, interval_s: float) -> float:
    """Rounds run at 0, interval, 2 x interval, ...; an arrival at a round's instant is seen by that round."""
    return math.ceil(arrival / interval_s) * interval_s


def srpt_completions(jobs: list[tuple[float, float]]) -> list[float]:
    """Completion times of (release, processing time) jobs on one preemptive machine under shortest remaining
    processing time first (optimal for the sum of completion times), in the order given."""
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i][0], i))
    done = [0.0] * len(jobs)
    ready: list[tuple[float, int]] = []  # (remaining, index)
    now = 0.0
    pos = 0
    while pos < len(order) or ready:
        if not ready:
            now = max(now, jobs[order[pos]][0])
        while pos < len(order) and jobs[order[pos]][0] <= now:
            i = order[pos]
            heapq.heappush(ready, (jobs[i][1], i))
            pos += 1
        remaining, i = heapq.heappop(ready)
        next_release = jobs[order[pos]][0] if pos < len(order) else math.inf
        if now + remaining <= next_release:
            now += remaining
            done[i] = now
        else:
            heapq.heappush(ready, (remaining - (next_release - now), i))
            now = next_release
    return done


def lower_bound(trace: list[TraceJob], cluster: ClusterShape, model: Callable[[str], Model]) -> Bound:
    if not trace:
        return Bound(0.0, 0.0)
    capacity = cluster.nodes * cluster.gpus_per_node
    alone: list[float] = []
    machine: list[tuple[float, float]] = []
    cache: dict[tuple[str, int], Best] = {}
    for t in trace:
        best = cache.get((t.app, t.batch))
        if best is None:
            best = cache[(t.app, t.batch)] = best_placement(model(t.app), t.batch, cluster)
        start = first_round(t.arrival, cluster.interval_s)
        alone.append(start + best.seconds - t.arrival)
        machine.append((start, best.gpu_seconds / capacity))
    done = srpt_completions(machine)
    capacity_jct = [c - t.arrival for c, t in zip(done, trace, strict=True)]
    return Bound(sum(alone) / len(alone), sum(capacity_jct) / len(capacity_jct))
