"""Per-node fit: which nodes a job may use, what is free on each, and gang placement of identical workers.

`Cluster` is the planner's private, mutable scratch state (built fresh from a snapshot inside every `plan()` call,
never shared): free resources per node, plus one `ShapeIndex` per distinct (request, eligibility) pair that keeps how
many more workers of that shape each node can take, bucketed by that count, so placement is cheap on large clusters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from elastic_operator.policy.resources import Resources
from elastic_operator.policy.snapshot import NO_EXECUTE, NO_SCHEDULE, Job, Node, Snapshot

_UNBOUNDED = 1 << 20  # workers of an empty request that "fit" on one node


def eligible(node: Node, job: Job) -> bool:
    """Schedulable, ready, matching the node selector, and every hard taint tolerated."""
    if not (node.schedulable and node.ready):
        return False
    if any(node.labels.get(k) != v for k, v in job.node_selector.items()):
        return False
    for taint in node.taints:
        if taint.effect in (NO_SCHEDULE, NO_EXECUTE) and not any(t.tolerates(taint) for t in job.tolerations):
            return False
    return True


def _eligibility_key(job: Job) -> tuple[object, ...]:
    return (tuple(sorted(job.node_selector.items())), job.tolerations)


def _count(free: Mapping[str, int], request: tuple[tuple[str, int], ...]) -> int:
    count = _UNBOUNDED
    for name, amount in request:
        have = free.get(name, 0)
        if have < amount:
            return 0
        count = min(count, have // amount)
    return count


class ShapeIndex:
    """How many workers of one shape each eligible node can still take."""

    def __init__(self, request: tuple[tuple[str, int], ...], nodes: list[str], free: dict[str, dict[str, int]]):
        self.request = request
        self.nodes = nodes
        self.node_set = frozenset(nodes)
        self.count: dict[str, int] = {}
        self.buckets: dict[int, set[str]] = {}
        self.total = 0
        for name in nodes:
            c = _count(free[name], request)
            self.count[name] = c
            self.total += c
            if c > 0:
                self.buckets.setdefault(c, set()).add(name)

    def update(self, name: str, free: Mapping[str, int]) -> None:
        old = self.count[name]
        new = _count(free, self.request)
        if new == old:
            return
        if old > 0:
            bucket = self.buckets[old]
            bucket.discard(name)
            if not bucket:
                del self.buckets[old]
        if new > 0:
            self.buckets.setdefault(new, set()).add(name)
        self.count[name] = new
        self.total += new - old

    def best_fit(self, at_least: int, exclude: frozenset[str] = frozenset()) -> str | None:
        """The node with the fewest free places that still takes `at_least` workers (ties: by name)."""
        for c in sorted(self.buckets):
            if c < at_least:
                continue
            names = [n for n in self.buckets[c] if n not in exclude] if exclude else self.buckets[c]
            if names:
                return min(names)
        return None

    def largest(self, exclude: frozenset[str] = frozenset()) -> str | None:
        for c in sorted(self.buckets, reverse=True):
            names = [n for n in self.buckets[c] if n not in exclude] if exclude else self.buckets[c]
            if names:
                return min(names)
        return None

    def capacity(self, exclude: frozenset[str] = frozenset()) -> int:
        if not exclude:
            return self.total
        return sum(c for n, c in self.count.items() if n not in exclude)


@dataclass(frozen=True)
class Blocking:
    """Why a gang does not fit, for humans (`message`) and for status (`inputs`)."""

    message: str
    inputs: Mapping[str, str | int | float]


class Cluster:
    """Free capacity per node during one planning round."""

    def __init__(self, snapshot: Snapshot):
        self.nodes: dict[str, Node] = {n.name: n for n in sorted(snapshot.nodes, key=lambda n: n.name)}
        self.free: dict[str, dict[str, int]] = {name: dict(n.allocatable) for name, n in self.nodes.items()}
        for name, used in snapshot.foreign_usage.items():
            if name in self.free:
                self._sub(name, used, 1)
        for job in snapshot.jobs:
            for worker in (*job.workers, *job.leaving):
                if worker.node in self.free:
                    self._sub(worker.node, job.per_worker, 1)
        self._eligible: dict[tuple[object, ...], list[str]] = {}
        self._shapes: dict[tuple[object, ...], ShapeIndex] = {}
        self._shapes_of_node: dict[str, list[ShapeIndex]] = {name: [] for name in self.nodes}
        self._per_node: dict[tuple[object, ...], int] = {}
        self.changes = 0  # bumps on every take or release (keys caches of derived facts)
        self.node_version: dict[str, int] = dict.fromkeys(self.nodes, 0)  # per node: bumps when it changes

    def _sub(self, name: str, request: Mapping[str, int], n: int) -> None:
        free = self.free[name]
        for res, amount in request.items():
            free[res] = free.get(res, 0) - amount * n

    def eligible_nodes(self, job: Job) -> list[str]:
        key = _eligibility_key(job)
        nodes = self._eligible.get(key)
        if nodes is None:
            nodes = [name for name, node in self.nodes.items() if eligible(node, job)]
            self._eligible[key] = nodes
        return nodes

    def shape(self, job: Job) -> ShapeIndex:
        key = (job.per_worker, _eligibility_key(job))
        index = self._shapes.get(key)
        if index is None:
            request = tuple((k, v) for k, v in job.per_worker.items() if v > 0)
            index = ShapeIndex(request, self.eligible_nodes(job), self.free)
            self._shapes[key] = index
            for name in index.nodes:
                self._shapes_of_node[name].append(index)
        return index

    def per_node(self, job: Job) -> int:
        """How many workers of `job`'s shape one of its eligible nodes holds when empty: the most common count
        (ties: the larger), 0 when none holds one or the request is empty. What "a whole node" means for the job."""
        key = (job.per_worker, _eligibility_key(job))
        found = self._per_node.get(key)
        if found is None:
            request = tuple((k, v) for k, v in job.per_worker.items() if v > 0)
            counts: dict[int, int] = {}
            if request:
                for name in self.eligible_nodes(job):
                    c = _count(self.nodes[name].allocatable, request)
                    if c > 0:
                        counts[c] = counts.get(c, 0) + 1
            found = max(counts, key=lambda c: (counts[c], c)) if counts else 0
            self._per_node[key] = found
        return found

    def take(self, name: str, request: Mapping[str, int], n: int = 1) -> None:
        self._sub(name, request, n)
        self.changes += 1
        self.node_version[name] += 1
        for index in self._shapes_of_node.get(name, ()):
            index.update(name, self.free[name])

    def release(self, name: str, request: Mapping[str, int], n: int = 1) -> None:
        if name not in self.free:
            return
        self._sub(name, request, -n)
        self.changes += 1
        self.node_version[name] += 1
        for index in self._shapes_of_node.get(name, ()):
            index.update(name, self.free[name])

    def touch(self, name: str) -> None:
        """Mark a node changed for caches (e.g. a job with workers there stopped being a reclaim candidate)."""
        if name in self.node_version:
            self.node_version[name] += 1

    def place_gang(
        self, job: Job, n: int, exclude: frozenset[str] = frozenset(), room_for: int = 0
    ) -> list[str] | None:
        """Nodes for `n` identical workers of `job`, all or nothing; reserves them on success.

        One node when one takes them all (the tightest such node, to keep big holes for big workers; with `room_for`
        > n, the tightest node that would also take the job's growth to `room_for` workers, else the roomiest, so
        the job can grow without spreading); otherwise the roomiest nodes first, so the gang spans as few nodes as
        possible."""
        if n <= 0:
            return []
        index = self.shape(job)
        if index.total < n or (exclude and index.capacity(exclude) < n):
            return None
        if room_for > n:
            name = index.best_fit(room_for, exclude) or index.largest(exclude)
            if name is not None and index.count.get(name, 0) >= n:
                self.take(name, job.per_worker, n)
                return [name] * n
        chosen: list[str] = []
        left = n
        used: set[str] = set()
        while left > 0:
            skip = exclude | used if used else exclude
            name = index.best_fit(left, skip)
            take = left
            if name is None:
                name = index.largest(skip)
                if name is None:  # pragma: no cover - capacity() said it fits
                    break
                take = min(left, index.count[name])
            chosen.extend([name] * take)
            used.add(name)
            left -= take
        if left > 0:  # pragma: no cover
            return None
        for name in used:
            self.take(name, job.per_worker, chosen.count(name))
        return chosen

    def place_one(
        self, job: Job, near: Iterable[str], exclude: frozenset[str] = frozenset(), want: int = 1
    ) -> str | None:
        """A node for one more worker (see `peek_one`); reserves it."""
        best = self.peek_one(job, near, exclude, want)
        if best is not None:
            self.take(best, job.per_worker)
        return best

    def peek_one(
        self, job: Job, near: Iterable[str], exclude: frozenset[str] = frozenset(), want: int = 1
    ) -> str | None:
        """Where one more worker would go, without reserving it: a node the job already uses (the one with most of
        its workers) if it has room, else the tightest node with room for `want` more (the job's workers to come
        stay together: spreading a job over nodes costs throughput), else the roomiest."""
        index = self.shape(job)
        seen: dict[str, int] = {}
        for name in near:
            seen[name] = seen.get(name, 0) + 1
        for name in sorted(seen, key=lambda x: (-seen[x], x)):
            if name not in exclude and index.count.get(name, 0) > 0:
                return name
        return index.best_fit(max(1, want), exclude) or index.largest(exclude)

    def blocking(self, job: Job, n: int) -> Blocking:
        """Explain why `n` workers of `job` do not fit now: no node, not enough in total, or fragmented."""
        nodes = self.eligible_nodes(job)
        request = job.per_worker
        index = self.shape(job)
        inputs: dict[str, str | int | float] = {"eligible_nodes": len(nodes), "fits_workers": index.total}
        if not nodes:
            why = "no schedulable, ready node matches its node selector and tolerations"
            return Blocking(why, inputs)
        parts: list[str] = []
        tightest: tuple[float, str, int, int] | None = None
        for res, amount in request.items():
            if amount <= 0:
                continue
            holders = [max(0, self.free[name].get(res, 0)) for name in nodes]
            total = sum(holders)
            inputs[f"free_{res}"] = total
            if total < amount * n:
                parts.append(f"needs {n} x {amount} {res} = {amount * n}, {total} free on eligible nodes")
            share = amount * n / total if total else float("inf")
            if tightest is None or share > tightest[0]:
                tightest = (share, res, amount, sum(1 for h in holders if h > 0))
        if not parts and index.total < n and tightest is not None:
            _, res, amount, with_some = tightest
            total = int(inputs[f"free_{res}"])
            parts.append(
                f"fragmented: {total} free {res} on {with_some} nodes but each worker needs {amount} on one node"
            )
        if not parts:
            parts.append(f"room for {index.total} of {n} workers on eligible nodes")
        return Blocking("; ".join(parts), inputs)


def request_text(request: Resources) -> str:
    return ", ".join(f"{k}={v}" for k, v in request.items()) or "nothing"
