"""Grow: spare capacity goes to running (and just admitted) jobs, up to their maximum.

Higher priority classes are served first. Within a class, one worker at a time goes to the job with the fewest
workers ("fair") or to the job whose expected throughput gains most from it, as a fraction of its current speed
("goodput", Pollux's idea with reported throughput instead of a fitted model; see `Curve.marginal_gain`). Each
worker is judged where it would land (`Cluster.peek_one`): one that takes the job onto another node is worth the
throughput the job is expected to have on that many nodes, so a job whose reports show that spreading slows it down
is not spread, and a free place on a node it already uses goes first; there, a worker is worth the best run of
workers it starts (`Candidate.run_gain`), so a curve that dips before it rises is crossed. A
running job keeps its extra workers only when the gain pays for the rescale pause over its cooldown
(`worth_rescaling`); jobs that fail are dropped and the rest re-shared, and at the end every dropped job gets one
more chance at the best size the leftover allows. That last pass is what makes a plan a fixpoint: re-planning after
applying it finds nothing to do.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from elastic_operator.policy.fit import Cluster
from elastic_operator.policy.snapshot import Job, Settings, spans
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

    @property
    def spans(self) -> int:
        """Nodes its planned workers are on."""
        return spans([*self.nodes, *self.added])

    def packed_only(self, settings: Settings) -> bool:
        """Just admitted without any measurement: it grows only on the node it was admitted to (see `grow`)."""
        return self.fresh and not self.job.throughput and settings.first_on_one_node

    def gain_at(self, node: str) -> float:
        """What one more worker on `node` adds, as a fraction of the job's planned speed (placement included)."""
        assert self.curve is not None
        near = {*self.nodes, *self.added}
        return self.curve.marginal_gain(self.planned, len(near), len(near) + (node not in near))

    def run_gain(self, node: str, room: int) -> float:
        """The best average gain per worker of 2..`room` more workers on `node`, a node the job already uses, as a
        fraction of its planned speed: a curve that dips before it rises (two workers more on the node help, one
        does not) is crossed one worker at a time only if each is valued by the run it starts."""
        assert self.curve is not None
        k = self.spans
        now = self.curve.at(self.planned, k)
        if now <= 0:
            return 0.0
        return max(((self.curve.at(self.planned + j, k) - now) / (j * now) for j in range(2, room + 1)), default=0.0)


def _score(c: Candidate, gain: float, settings: Settings) -> tuple[float, float, str]:
    if settings.grow_mode == "fair":
        return (float(c.planned), c.job.created, c.job.key)
    return (-gain * service_weight(c.job, settings, c.curve), c.job.created, c.job.key)


def _next(cluster: Cluster, c: Candidate, settings: Settings) -> tuple[float, str] | None:
    """Where the job's next worker would go and what it would add there, or None if it wants no more."""
    if c.planned >= c.limit:
        return None
    node = cluster.peek_one(c.job, [*c.nodes, *c.added], c.exclude, c.limit - c.planned)
    if node is None or (node not in c.nodes and c.packed_only(settings)):
        return None
    gain = c.gain_at(node)
    if settings.grow_mode == "goodput" and (node in c.nodes or node in c.added):
        room = min(cluster.shape(c.job).count.get(node, 0), c.limit - c.planned)
        gain = max(gain, c.run_gain(node, room))
    wanted = gain >= settings.min_marginal_gain if settings.grow_mode == "goodput" else gain > 0
    return (gain, node) if wanted else None


def _undo(cluster: Cluster, c: Candidate) -> None:
    for name in c.added:
        cluster.release(name, c.job.per_worker)
    c.added.clear()


def _share(cluster: Cluster, members: list[Candidate], settings: Settings) -> None:
    heap: list[tuple[tuple[float, float, str], int]] = []
    for i, c in enumerate(members):
        found = _next(cluster, c, settings)
        if found is not None:
            heap.append((_score(c, found[0], settings), i))
    heapq.heapify(heap)
    while heap:
        score, i = heapq.heappop(heap)
        c = members[i]
        found = _next(cluster, c, settings)  # others took places since: where would it land now?
        if found is None:
            continue
        now = _score(c, found[0], settings)
        if now != score:
            heapq.heappush(heap, (now, i))  # worth something else now: back in line
            continue
        cluster.take(found[1], c.job.per_worker)
        c.added.append(found[1])
        found = _next(cluster, c, settings)
        if found is not None:
            heapq.heappush(heap, (_score(c, found[0], settings), i))


def _pays(c: Candidate, settings: Settings) -> bool:
    if c.fresh or not c.added:
        return True
    return worth_rescaling(c.job, c.size, c.planned, settings, c.curve, spans(c.nodes), c.spans)[0]


def _best_alone(cluster: Cluster, c: Candidate, settings: Settings) -> None:
    """Give `c` all it wants of the leftover, then keep the best-throughput prefix if it pays; else nothing."""
    while (found := _next(cluster, c, settings)) is not None:
        cluster.take(found[1], c.job.per_worker)
        c.added.append(found[1])
    if not c.added:
        return
    assert c.curve is not None
    curve = c.curve

    def rate(m: int) -> float:
        return curve.at(m, spans([*c.nodes, *c.added[: m - c.size]]))

    best = max(range(c.size + 1, c.planned + 1), key=lambda m: (rate(m), -m))
    while c.planned > best:
        cluster.release(c.added.pop(), c.job.per_worker)
    if not worth_rescaling(c.job, c.size, c.planned, settings, curve, spans(c.nodes), c.spans)[0]:
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
            c.curve = Curve(c.job, settings, cluster.per_node(c.job))
        c.limit = c.job.max_workers
        if c.packed_only(settings):
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
