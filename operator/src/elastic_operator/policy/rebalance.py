"""Rebalance: move workers from jobs that gain little from them to jobs that gain much, when nothing is free.

Growth only hands out idle capacity, so without this a job that arrived when the cluster was empty would keep
everything it took while later jobs sit at their minimum. One worker at a time moves from the donor that loses least
(its last worker's marginal gain, as a fraction of its speed without it; or, in fair mode, the job with the most
workers) to the recipient that gains most (or has the fewest), while the gain beats the loss by
`Settings.rebalance_margin`. A donor must be of lower or equal priority than the recipient, allow shrinking, stay at
or above its minimum, and be out of its cooldown (unlike reclaim for the queue head, rebalancing is an optimisation
and waits). At the end the whole set of moves must pay for every pause it causes over the jobs' cooldown horizons, or
none of it happens; gains and losses are summed in seconds of each job's own progress (see `_value`).
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from elastic_operator.policy.fit import Cluster
from elastic_operator.policy.grow import Candidate
from elastic_operator.policy.snapshot import Job, Settings, Worker, spans
from elastic_operator.policy.throughput import Curve, cooldown, expected_pause, service_weight

DONOR_TRIES = 16  # donors without room a recipient looks past before giving up (bounds a round's work)


@dataclass
class Donor:
    job: Job
    curve: Curve
    removed: list[Worker] = field(default_factory=list)
    to: list[str] = field(default_factory=list)  # recipients, by key
    by_node: dict[str, list[Worker]] = field(default_factory=dict)  # workers it still has, by node, oldest first
    gives: dict[str, int] = field(default_factory=dict)  # what one of its workers frees

    def __post_init__(self) -> None:
        self.gives = dict(self.job.per_worker)
        for w in sorted(self.job.workers, key=lambda w: w.slot):
            self.by_node.setdefault(w.node, []).append(w)

    @property
    def planned(self) -> int:
        return self.job.size - len(self.removed)

    def loss_of(self, worker: Worker) -> float:
        """What giving up `worker` costs, as a fraction of the job's speed without it (placement included: a
        worker that is the job's last on its node takes a node off its span, which may cost less, or gain)."""
        k = len(self.by_node)
        return self.curve.marginal_gain(self.planned - 1, k - (len(self.by_node[worker.node]) == 1), k)

    def give(self, worker: Worker) -> None:
        self.removed.append(worker)
        left = self.by_node[worker.node]
        left.remove(worker)
        if not left:
            del self.by_node[worker.node]


def _value(curve: Curve, n: tuple[int, int], m: tuple[int, int], horizon: float, pause: float) -> float:
    """Seconds of its own progress a job gains (or loses, < 0) over the horizon by going from placement n to m
    ((workers, nodes)) with a pause: work at m minus work at n, divided by its speed at n.

    In the job's own time because the objective is completion time: a pause delays a 48-worker job by the same 30 s
    as a 1-worker job. Counted in 1-worker throughputs instead, the big job's pause weighed 48 times as much, and a
    just-admitted job stayed at one worker beside a big job's useless last workers (on the Pollux workloads at half
    load, jobs asking for 16 GPUs ran on one for most of their life)."""
    base = curve.at(*n) or curve.at(1) or 1.0
    return (curve.at(*m) * max(0.0, horizon - pause) - curve.at(*n) * horizon) / base


def rebalance(cluster: Cluster, recipients: list[Candidate], donors: list[Job], settings: Settings) -> list[Donor]:
    """Moves workers into `recipients[i].added` (after what growth gave them) and returns the donors that gave."""
    fair = settings.grow_mode == "fair"
    pool = [Donor(j, Curve(j, settings, cluster.per_node(j))) for j in donors]
    start = {id(c): len(c.added) for c in recipients}
    taken: set[str] = set()  # jobs that received: never donors too
    given: set[str] = set()
    for c in recipients:
        if c.curve is None:
            c.curve = Curve(c.job, settings, cluster.per_node(c.job))
        if not c.limit:
            c.limit = c.job.max_workers

    # The ladder and the heap rank by what a worker is worth on the nodes a job already uses; once a move's slot
    # is known, it must still beat the donor's loss with the nodes it really spans (`exact`).
    def gain(c: Candidate) -> float:
        assert c.curve is not None
        if fair:
            return -float(c.planned)
        k = c.spans
        return c.curve.marginal_gain(c.planned, k, k) * service_weight(c.job, settings, c.curve)

    def loss(d: Donor) -> float:
        if fair:
            return -float(d.planned)
        k = len(d.by_node)
        return d.curve.marginal_gain(d.planned - 1, k, k) * service_weight(d.job, settings, d.curve)

    def exact(c: Candidate, d: Donor, slot: Worker) -> bool:
        # The recipient itself must gain where the worker lands: a donor that would be faster without the worker
        # (it spans one node less) sheds it by rule 1 once measured, it does not push it onto a job it slows down.
        raw = c.gain_at(slot.node)
        if fair:
            return raw > 0
        if raw < settings.min_marginal_gain:
            return False
        weight = service_weight(c.job, settings, c.curve)
        return beats(raw * weight, d.loss_of(slot) * service_weight(d.job, settings, d.curve))

    def beats(g: float, lost: float) -> bool:
        if fair:  # g = -recipient size, lost = -donor size: move while the donor has 2 or more workers more
            return -lost - -g >= 2
        return g > lost * (1.0 + settings.rebalance_margin) + settings.min_marginal_gain

    # donors sorted by what their last worker is worth; recipients in a heap by what one more would be worth
    ladder = sorted((loss(d), d.job.key, i) for i, d in enumerate(pool) if d.planned > d.job.min_workers)
    heap = [(-gain(c), c.job.created, c.job.key, i) for i, c in enumerate(recipients) if c.planned < c.limit]
    heapq.heapify(heap)
    no_slot: dict[tuple[object, ...], int] = {}  # (shape, eligible nodes, excluded nodes, donor) -> cluster.changes
    while heap and ladder:
        neg, _, _, ci = heapq.heappop(heap)
        c = recipients[ci]
        g = -neg
        if c.job.key in given or (not fair and g < settings.min_marginal_gain):
            continue
        if not beats(g, ladder[0][0]):
            break  # the best recipient cannot beat the cheapest donor: nobody can
        eligible = cluster.shape(c.job).node_set
        if c.packed_only(settings):
            eligible = eligible & frozenset(c.nodes)
        mine = set(c.nodes) | set(c.added)
        need = tuple((r, v) for r, v in c.job.per_worker.items() if v > 0)
        move: tuple[int, Donor, Worker] | None = None
        misses = 0
        for pos, (lost, _, di) in enumerate(ladder):
            if not beats(g, lost) or misses >= DONOR_TRIES:
                break
            d = pool[di]
            if d.job.key == c.job.key or d.job.priority > c.job.priority or d.job.key in taken:
                continue
            tried = (need, id(eligible), c.exclude, di)
            if no_slot.get(tried) == cluster.changes:
                continue  # this donor had no room for this shape, and nothing has moved since
            slot = _slot(cluster, eligible - c.exclude if c.exclude else eligible, mine, need, d)
            if slot is not None and exact(c, d, slot):
                move = (pos, d, slot)
                break
            if slot is None:
                no_slot[tried] = cluster.changes
            misses += 1
        if move is None:
            continue  # no donor for it now, and donors only get dearer
        pos, d, slot = move
        cluster.release(slot.node, d.job.per_worker)
        cluster.take(slot.node, c.job.per_worker)
        c.added.append(slot.node)
        d.give(slot)
        d.to.append(c.job.key)
        taken.add(c.job.key)
        given.add(d.job.key)
        _, key, di = ladder.pop(pos)
        if d.planned > d.job.min_workers:
            bisect.insort(ladder, (loss(d), key, di))
        if c.planned < c.limit:
            heapq.heappush(heap, (-gain(c), c.job.created, c.job.key, ci))
    moved = [d for d in pool if d.removed]
    if not moved:
        return []
    total = 0.0
    for c in recipients:
        if len(c.added) > start[id(c)]:
            assert c.curve is not None
            pause = 0.0 if c.fresh else expected_pause(c.job, settings)
            before, after = (c.size, spans(c.nodes)), (c.planned, c.spans)
            total += _value(c.curve, before, after, cooldown(c.job, settings), pause)
    for d in moved:
        before, after = (d.job.size, d.job.spans), (d.planned, len(d.by_node))
        total += _value(d.curve, before, after, cooldown(d.job, settings), expected_pause(d.job, settings))
    if total > 0:
        return moved
    for c in recipients:  # not worth its pauses: undo every move
        while len(c.added) > start[id(c)]:
            cluster.release(c.added.pop(), c.job.per_worker)
    for d in moved:
        for w in d.removed:
            cluster.take(w.node, d.job.per_worker)
    return []


def _slot(
    cluster: Cluster, eligible: frozenset[str], mine: set[str], need: tuple[tuple[str, int], ...], d: Donor
) -> Worker | None:
    """A worker of the donor whose removal makes room for one worker (`need`) of the recipient on an `eligible`
    node: on a node the recipient already uses (`mine`) if possible, else where the donor has the fewest workers;
    newest slot first. (One fit check per node, not per worker: a wide donor has many workers on few nodes, and this
    runs for many donor-recipient pairs.)"""
    gives = d.gives
    best: tuple[bool, int, str] | None = None
    for node, workers in d.by_node.items():
        if node not in eligible:
            continue
        key = (node not in mine, len(workers), node)
        if best is not None and key >= best:
            continue
        free = cluster.free[node]
        if all(free.get(r, 0) + gives.get(r, 0) >= v for r, v in need):
            best = key
    return d.by_node[best[2]][-1] if best is not None else None
