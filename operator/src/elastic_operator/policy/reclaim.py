"""Reclaim for the head of the queue: which slots of which running jobs to take so its minimum gang fits.

Shrinking comes first: jobs of lower or equal priority that allow it give up workers down to their minimum, one node
at a time, always on the node where the fewest removals let the head place one more worker (so whole nodes are
freed rather than one GPU here and there). Only if that is not enough are jobs of strictly lower priority that allow
it requeued, lowest priority and youngest first. Then anything that turned out unnecessary is given back, requeues
first. Jobs of higher priority are never candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

from elastic_operator.policy.fit import Cluster, _count
from elastic_operator.policy.snapshot import Job, Worker


@dataclass(frozen=True)
class Victim:
    job: Job
    remove: tuple[Worker, ...]
    requeue: bool


def may_shrink_for(victim: Job, head: Job) -> bool:
    return victim.may_shrink and victim.priority <= head.priority and victim.size > victim.min_workers


def may_requeue_for(victim: Job, head: Job) -> bool:
    return victim.may_requeue and victim.priority < head.priority


def victim_order(jobs: list[Job]) -> list[Job]:
    """Running jobs in the order reclaim prefers them, each with its workers sorted by slot."""
    ordered = sorted(jobs, key=lambda j: (j.priority, -(j.size - j.min_workers), j.key))
    return [
        j if _sorted(j.workers) else replace(j, workers=tuple(sorted(j.workers, key=lambda w: w.slot))) for j in ordered
    ]


def _sorted(workers: tuple[Worker, ...]) -> bool:
    return all(a.slot < b.slot for a, b in pairwise(workers))


Evaluation = tuple[tuple[int, int, str], list[tuple[Job, Worker]]] | None
Cache = dict[tuple[str, object, int], tuple[int, Evaluation]]


def reclaim(cluster: Cluster, head: Job, candidates: list[Job], cache: Cache | None = None) -> list[Victim] | None:
    """Victims whose removal lets `head`'s `min_workers` fit, or None when even all candidates would not do.
    `candidates` must come in `victim_order`. `cache` (one per planning round) keeps per-node evaluations between
    calls; the caller must `cluster.touch()` the nodes of any job that stops being a candidate."""
    cache = {} if cache is None else cache
    dirty: set[str] = set()  # nodes changed by this call's own picks (not cacheable)
    index = cluster.shape(head)
    request = index.request
    need = head.min_workers
    eligible = index.node_set
    free: dict[str, dict[str, int]] = {}

    def node_free(name: str) -> dict[str, int]:
        f = free.get(name)
        if f is None:
            f = dict(cluster.free[name])
            free[name] = f
        return f

    def count(name: str) -> int:
        return _count(free[name], request) if name in free else index.count[name]

    have = index.total
    shrinkable = [j for j in candidates if may_shrink_for(j, head)]
    budget = {j.key: j.size - j.min_workers for j in shrinkable}
    by_node: dict[str, list[tuple[Job, Worker]]] = {}
    job_nodes: dict[str, set[str]] = {}
    # candidates come in victim order (lowest priority, then most surplus, then key), workers newest first
    for job in shrinkable:
        for worker in reversed(job.workers):
            if worker.node in eligible:
                by_node.setdefault(worker.node, []).append((job, worker))
                job_nodes.setdefault(job.key, set()).add(worker.node)
    removed: dict[str, list[Worker]] = {}
    order: list[tuple[Job, Worker]] = []  # shrink removals in the order made

    def sub(name: str, job: Job, sign: int) -> None:
        f = node_free(name)
        for res, amount in job.per_worker.items():
            f[res] = f.get(res, 0) + sign * amount

    # 1. shrink toward minimum, node by node. The best node is the one where the fewest removals give the head one
    # more place (ties: the node left with the fewest victim slots, then by name); nodes are tried in order of how
    # many victim slots they hold, so the first node where a single removal does it is the best one.
    def evaluate(name: str) -> Evaluation:
        key = (name, request, head.priority)
        version = cluster.node_version[name]
        if name not in dirty:
            hit = cache.get(key)
            if hit is not None and hit[0] == version:
                return hit[1]
        found = _evaluate(name)
        if name not in dirty:
            cache[key] = (version, found)
        return found

    def _evaluate(name: str) -> Evaluation:
        slots = by_node[name]
        before = count(name)
        trial = dict(free[name]) if name in free else dict(cluster.free[name])
        used: dict[str, int] = {}
        picked: list[tuple[Job, Worker]] = []
        for job, worker in slots:
            if used.get(job.key, 0) >= budget[job.key]:
                continue
            used[job.key] = used.get(job.key, 0) + 1
            for res, amount in job.per_worker.items():
                trial[res] = trial.get(res, 0) + amount
            picked.append((job, worker))
            if _count(trial, request) > before:
                return (len(picked), len(slots) - len(picked), name), picked
        return None

    while have < need:
        best: tuple[tuple[int, int, str], list[tuple[Job, Worker]]] | None = None
        for name in sorted(by_node, key=lambda n: (len(by_node[n]), n)):
            found = evaluate(name)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
                if found[0][0] == 1:
                    break
        if best is None:
            break
        name = best[0][2]
        before = count(name)
        for job, worker in best[1]:
            sub(name, job, +1)
            budget[job.key] -= 1
            dirty.update(job_nodes[job.key])
            removed.setdefault(job.key, []).append(worker)
            order.append((job, worker))
            by_node[name].remove((job, worker))
        if not by_node[name]:
            del by_node[name]
        have += count(name) - before

    # 2. requeue lower-priority jobs, lowest priority and youngest first
    requeued: list[Job] = []
    if have < need:
        requeueable = [j for j in candidates if may_requeue_for(j, head)]
        for job in sorted(requeueable, key=lambda j: (j.priority, -j.created, j.key)):
            if have >= need:
                break
            gone = {w.slot for w in removed.get(job.key, [])}
            rest = [w for w in job.workers if w.slot not in gone and w.node in eligible]
            if not rest:
                continue
            for worker in rest:
                before = count(worker.node)
                sub(worker.node, job, +1)
                have += count(worker.node) - before
            requeued.append(job)
        if have < need:
            return None

    # 3. give back what is not needed: requeues first (newest decision first), then single shrink slots
    for job in reversed(list(requeued)):
        gone = {w.slot for w in removed.get(job.key, [])}
        rest = [w for w in job.workers if w.slot not in gone and w.node in eligible]
        delta = 0
        for worker in rest:
            before = count(worker.node)
            sub(worker.node, job, -1)
            delta += count(worker.node) - before
        if have + delta >= need:
            have += delta
            requeued.remove(job)
        else:
            for worker in rest:
                sub(worker.node, job, +1)
    requeued_keys = {j.key for j in requeued}
    for job, worker in reversed(order):
        if job.key in requeued_keys:
            continue
        before = count(worker.node)
        sub(worker.node, job, -1)
        delta = count(worker.node) - before
        if have + delta >= need:
            have += delta
            removed[job.key].remove(worker)
        else:
            sub(worker.node, job, +1)

    victims: list[Victim] = []
    jobs = {j.key: j for j in candidates}
    for key in sorted(set(removed) | requeued_keys):
        job = jobs[key]
        if key in requeued_keys:
            victims.append(Victim(job, tuple(sorted(job.workers, key=lambda w: w.slot)), True))
        elif removed[key]:
            victims.append(Victim(job, tuple(sorted(removed[key], key=lambda w: w.slot)), False))
    return victims
