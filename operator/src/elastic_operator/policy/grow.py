"""Grow: spare capacity goes to running (and just admitted) jobs, up to their maximum.

Higher priority classes are served first. Within a class, one worker at a time goes to the job with the fewest
workers ("fair") or to the job whose expected throughput gains most from it, as a fraction of its current speed
("goodput", Pollux's idea with reported throughput instead of a fitted model; see `Curve.marginal_gain`). A
running job keeps its extra workers only when the gain pays for the rescale pause over its cooldown
(`worth_rescaling`); jobs that fail are dropped and the rest re-shared, and at the end every dropped job gets one
more chance at the best size the leftover allows. That last pass is what makes a plan a fixpoint: re-planning after
applying it finds nothing to do.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from elastic_operator.policy.fit import Cluster
from elastic_operator.policy.snapshot import Job, Settings
from elastic_operator.policy.throughput import Curve, service_weight, worth_rescaling


@dataclass
class Candidate:
    job: Job
    size: int  # workers it has (or is admitted with) before growing
    nodes: list[str]  # where those workers are, for locality
    fresh: bool  # admitted by this plan: no pause to pay
    exclude: frozenset[str] = frozenset()  # nodes it must leave alone (the blocked head's)
    curve: Curve | None = None
    limit: int = 0  # growth stops here: max_workers, or one node's worth for a new job (set by `grow`)
    added: list[str] = field(default_factory=list)

    @property
    def planned(self) -> int:
        return self.size + len(self.added)


def _score(c: Candidate, settings: Settings) -> tuple[float, float, str]:
    if settings.grow_mode == "fair":
        return (float(c.planned), c.job.created, c.job.key)
    assert c.curve is not None
    return (-c.curve.marginal_gain(c.planned) * service_weight(c.job, settings), c.job.created, c.job.key)


def _wants_more(c: Candidate, settings: Settings) -> bool:
    if c.planned >= c.limit:
        return False
    assert c.curve is not None
    gain = c.curve.marginal_gain(c.planned)
    return gain >= settings.min_marginal_gain if settings.grow_mode == "goodput" else gain > 0


def _undo(cluster: Cluster, c: Candidate) -> None:
    for name in c.added:
        cluster.release(name, c.job.per_worker)
    c.added.clear()


def _share(cluster: Cluster, members: list[Candidate], settings: Settings) -> None:
    heap: list[tuple[tuple[float, float, str], int]] = []
    for i, c in enumerate(members):
        if _wants_more(c, settings):
            heap.append((_score(c, settings), i))
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        c = members[i]
        node = cluster.place_one(c.job, [*c.nodes, *c.added], c.exclude, c.limit - c.planned)
        if node is None:
            continue
        c.added.append(node)
        if _wants_more(c, settings):
            heapq.heappush(heap, (_score(c, settings), i))


def _pays(c: Candidate, settings: Settings) -> bool:
    return c.fresh or not c.added or worth_rescaling(c.job, c.size, c.planned, settings, c.curve)[0]


def _best_alone(cluster: Cluster, c: Candidate, settings: Settings) -> None:
    """Give `c` all it wants of the leftover, then keep the best-throughput prefix if it pays; else nothing."""
    while _wants_more(c, settings):
        node = cluster.place_one(c.job, [*c.nodes, *c.added], c.exclude, c.limit - c.planned)
        if node is None:
            break
        c.added.append(node)
    if not c.added:
        return
    assert c.curve is not None
    curve = c.curve
    best = max(range(c.size + 1, c.planned + 1), key=lambda m: (curve.at(m), -m))
    while c.planned > best:
        cluster.release(c.added.pop(), c.job.per_worker)
    if not worth_rescaling(c.job, c.size, c.planned, settings, curve)[0]:
        _undo(cluster, c)


def _one_node(cluster: Cluster, c: Candidate) -> int:
    """The most workers `c` could have on one node: what the roomiest node takes, counting its own workers there."""
    index = cluster.shape(c.job)
    own: dict[str, int] = {}
    for name in c.nodes:
        own[name] = own.get(name, 0) + 1
    best = 0
    roomiest = index.largest(c.exclude)
    for name in {*own, *([roomiest] if roomiest else [])}:
        if name not in c.exclude:
            best = max(best, index.count.get(name, 0) + own.get(name, 0))
    return best


def grow(cluster: Cluster, candidates: list[Candidate], settings: Settings) -> None:
    """Fills `Candidate.added` (and reserves the nodes in `cluster`)."""
    for c in candidates:
        if c.curve is None:
            c.curve = Curve(c.job, settings)
        c.limit = c.job.max_workers
        if c.fresh and not c.job.throughput and settings.first_on_one_node:
            c.limit = min(c.limit, max(c.size, _one_node(cluster, c)))
    for priority in sorted({c.job.priority for c in candidates}, reverse=True):
        members = [c for c in candidates if c.job.priority == priority]
        dropped: list[Candidate] = []
        active = list(members)
        while True:
            _share(cluster, active, settings)
            failing = [c for c in active if not _pays(c, settings)]
            if not failing:
                break
            for c in active:
                _undo(cluster, c)
            dropped.extend(failing)
            active = [c for c in active if c not in failing]
        changed = True
        while changed:
            changed = False
            for c in sorted(dropped, key=lambda c: (c.job.created, c.job.key)):
                if c.added:
                    continue
                _best_alone(cluster, c, settings)
                if c.added:
                    changed = True
