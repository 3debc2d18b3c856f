"""`plan(snapshot, now)`: the whole scheduling policy as one pure function.

Order of business (each job changes at most once per plan; a job that changed at this very instant, i.e. whose
`last_rescale >= now`, is not changed again):

1. Bounds: running jobs above `max_workers` shrink to it; running jobs below `min_workers` grow back if they fit.
2. Queue walk, head first (priority, then age, with aging). While nothing is blocked, each job is admitted as a gang of
   `min_workers` if they fit node by node; if not, reclaim (shrink lower-or-equal priority jobs toward their
   minimum, then requeue lower-priority ones) is tried for it. The first job that fits neither way is the blocked
   head. Jobs behind it are backfilled only where that cannot delay it (`Settings.backfill`).
3. Grow: what is still free goes to running and just-admitted jobs (see `grow.py`). While a head is blocked, only jobs
   it could shrink back may grow onto nodes it could use.
4. Rebalance: workers move from jobs that gain little from them to jobs that gain much (see `rebalance.py`).

Reclaim ignores cooldowns (a higher- or equal-priority job waiting beats a recent rescale); grows respect them.
"""

from __future__ import annotations

from elastic_operator.policy.decision import Action, Decision, InputValue, Plan
from elastic_operator.policy.fit import Blocking, Cluster, request_text
from elastic_operator.policy.grow import Candidate, grow
from elastic_operator.policy.queue import entries, order
from elastic_operator.policy.rebalance import Donor, rebalance
from elastic_operator.policy.reclaim import Cache, reclaim, victim_order
from elastic_operator.policy.snapshot import Job, Phase, Snapshot, Worker, spans
from elastic_operator.policy.throughput import cooldown, expected_pause, remaining_time

DETAILED_REASONS = 100  # queue positions that get a per-resource explanation of why they do not fit


def settled(job: Job, now: float) -> bool:
    """Changed at this very instant: nothing else happens to it until time moves on."""
    return job.last_rescale is not None and job.last_rescale >= now


def in_cooldown(job: Job, now: float, cooldown_s: float) -> bool:
    return job.last_rescale is not None and (job.last_rescale >= now or now - job.last_rescale < cooldown_s)


def _removal_order(job: Job) -> list[Worker]:
    """The job's workers in the order they are removed: from the nodes where it has the fewest (to consolidate
    it), newest first. Removing n takes the first n."""
    per_node: dict[str, int] = {}
    for w in job.workers:
        per_node[w.node] = per_node.get(w.node, 0) + 1
    return sorted(job.workers, key=lambda w: (per_node[w.node], w.node, -w.slot))


def _slots_to_drop(job: Job, n: int) -> tuple[Worker, ...]:
    """`n` workers to remove, from the nodes where the job has the fewest (to consolidate it), newest first."""
    return tuple(sorted(_removal_order(job)[:n], key=lambda w: w.slot))


class _Planner:
    def __init__(self, snapshot: Snapshot, now: float):
        self.snapshot = snapshot
        self.now = now
        self.settings = snapshot.settings
        self.cluster = Cluster(snapshot)
        self.decisions: dict[str, Decision] = {}
        self.jobs = sorted(snapshot.jobs, key=lambda j: j.key)
        self._blocking: dict[tuple[int, int, int], Blocking] = {}
        self._victims: list[Job] | None = None
        self._reclaim_cache: Cache = {}

    # -- helpers -------------------------------------------------------------------------------------------------
    def touched(self, job: Job) -> bool:
        return job.key in self.decisions and self.decisions[job.key].is_change

    def blocking(self, job: Job, n: int) -> Blocking:
        key = (id(self.cluster.shape(job)), n, self.cluster.changes)
        found = self._blocking.get(key)
        if found is None:
            found = self.cluster.blocking(job, n)
            self._blocking[key] = found
        return found

    def remove(self, job: Job, workers: tuple[Worker, ...]) -> None:
        for w in workers:
            self.cluster.release(w.node, job.per_worker)

    def decide(self, decision: Decision) -> None:
        self.decisions[decision.job] = decision

    # -- 1. bounds -----------------------------------------------------------------------------------------------
    def bounds(self) -> None:
        running = [j for j in self.jobs if j.phase is Phase.RUNNING and not j.busy and not settled(j, self.now)]
        for job in sorted(running, key=lambda j: (-j.priority, j.created, j.key)):
            if job.size > job.max_workers:
                drop = _slots_to_drop(job, job.size - job.max_workers)
                self.remove(job, drop)
                self.decide(
                    Decision(
                        job.key,
                        Action.SHRINK,
                        job.max_workers,
                        remove_slots=tuple(w.slot for w in drop),
                        reason=f"above its maximum: {job.size} workers, max {job.max_workers}",
                        inputs={"workers": job.size, "max_workers": job.max_workers},
                    )
                )
            elif (smaller := self._better_smaller(job)) is not None:
                fewer, rate = smaller
                drop = _slots_to_drop(job, job.size - fewer)
                self.remove(job, drop)
                now_rate = job.throughput[(job.size, job.spans)]
                self.decide(
                    Decision(
                        job.key,
                        Action.SHRINK,
                        fewer,
                        remove_slots=tuple(w.slot for w in drop),
                        reason=(
                            f"extra workers do not help: measured {rate:.3g} samples/s with {fewer}, "
                            f"{now_rate:.3g} with {job.size} on {job.spans} nodes"
                        ),
                        inputs={"workers": job.size, "nodes": job.spans, "measured_smaller": rate},
                    )
                )
            elif job.size < job.min_workers:
                missing = job.min_workers - job.size
                nodes = self.cluster.place_gang(job, missing)
                if nodes is not None:
                    self.decide(
                        Decision(
                            job.key,
                            Action.GROW,
                            job.min_workers,
                            add_nodes=tuple(nodes),
                            reason=f"below its minimum: {job.size} workers, min {job.min_workers}; replacing {missing}",
                            inputs={"workers": job.size, "min_workers": job.min_workers},
                        )
                    )
                else:
                    why = self.blocking(job, missing)
                    self.decide(
                        Decision(
                            job.key,
                            Action.WAIT,
                            job.size,
                            reason=f"below its minimum and {missing} more do not fit: {why.message}",
                            inputs=dict(why.inputs),
                        )
                    )

    def _better_smaller(self, job: Job) -> tuple[int, float] | None:
        """A smaller size at which this job measured at least its current throughput, on the nodes it would span
        after shedding the extra workers from the nodes where it has the fewest (out of cooldown only): a job
        spread over two nodes that ran faster on one sheds the workers that spread it. Returns (size, rate)."""
        measured = job.throughput
        now_rate = measured.get((job.size, job.spans))
        if not self.settings.grow or not job.may_shrink or now_rate is None:
            return None
        if in_cooldown(job, self.now, cooldown(job, self.settings)):
            return None
        sizes = {n for n, _ in measured if job.min_workers <= n < job.size}
        if not sizes:
            return None
        order = _removal_order(job)
        better: list[tuple[int, float]] = []
        for n in sizes:
            rate = measured.get((n, spans(w.node for w in order[job.size - n :])))
            if rate is not None and rate >= now_rate:
                better.append((n, rate))
        return min(better, key=lambda p: (-p[1], p[0])) if better else None

    # -- 2. queue ------------------------------------------------------------------------------------------------
    def reclaim_candidates(self, head: Job) -> list[Job]:
        if self._victims is None:
            running = [j for j in self.jobs if j.phase is Phase.RUNNING and not j.busy and not settled(j, self.now)]
            self._victims = victim_order(running)
        return [j for j in self._victims if j.priority <= head.priority and not self.touched(j)]

    def admit(self, job: Job, nodes: list[str], reason: str, inputs: dict[str, InputValue]) -> None:
        self.decide(Decision(job.key, Action.ADMIT, len(nodes), add_nodes=tuple(nodes), reason=reason, inputs=inputs))

    def walk(self) -> tuple[Job | None, frozenset[str]]:
        s = self.settings
        queue = order(self.jobs, self.now, s)
        self.queue = entries(queue, self.now, s)
        depth = len(queue)
        head: Job | None = None
        head_nodes: frozenset[str] = frozenset()
        head_why = ""
        for position, job in enumerate(queue, start=1):
            base: dict[str, InputValue] = {"queue_position": position, "queue_depth": depth}
            need = job.min_workers
            if job.last_rescale is not None and (
                job.last_rescale >= self.now or self.now - job.last_rescale < s.requeue_backoff_s
            ):
                self.decide(Decision(job.key, Action.WAIT, 0, reason="requeued recently; backing off", inputs=base))
                continue
            if head is None:
                nodes = self.cluster.place_gang(job, need, room_for=self._room_for(job))
                if nodes is not None:
                    self.admit(job, nodes, f"fits: {need} x ({request_text(job.per_worker)}) as a gang", base)
                    continue
                if s.reclaim:
                    victims = reclaim(self.cluster, job, self.reclaim_candidates(job), self._reclaim_cache)
                    if victims is not None:
                        names = []
                        for v in victims:
                            self.remove(v.job, v.remove)
                            for w in v.job.workers:  # it is no candidate any more: cached evaluations are stale
                                self.cluster.touch(w.node)
                            slots = tuple(w.slot for w in v.remove)
                            verb = "requeued" if v.requeue else f"shrunk to {v.job.size - len(slots)}"
                            names.append(f"{v.job.key} {verb}")
                            self.decide(
                                Decision(
                                    v.job.key,
                                    Action.REQUEUE if v.requeue else Action.SHRINK,
                                    0 if v.requeue else v.job.size - len(slots),
                                    remove_slots=slots,
                                    reason=f"reclaim for {job.key} (priority {job.priority} >= {v.job.priority})",
                                    inputs={"for": job.key, "workers": v.job.size},
                                )
                            )
                        nodes = self.cluster.place_gang(job, need)
                        assert nodes is not None, "reclaim promised a fit"
                        inputs = {**base, "reclaimed_from": ", ".join(names)}
                        self.admit(job, nodes, f"fits after reclaim: {'; '.join(names)}", inputs)
                        continue
                why = self.blocking(job, need)
                head, head_nodes = job, frozenset(self.cluster.eligible_nodes(job))
                head_why = why.message
                reclaim_note = " (reclaim from lower/equal priority would not be enough)" if s.reclaim else ""
                self.decide(
                    Decision(
                        job.key,
                        Action.WAIT,
                        0,
                        reason=f"head of the queue, waiting: {why.message}{reclaim_note}",
                        inputs={**base, **why.inputs, "blocking": why.message},
                    )
                )
                continue
            # behind a blocked head: backfill
            behind: dict[str, InputValue] = {**base, "head": head.key, "head_blocking": head_why}
            if s.backfill == "off":
                reason = f"behind {head.key} (no backfill)"
                self.decide(Decision(job.key, Action.WAIT, 0, reason=reason, inputs=behind))
                continue
            exclude: frozenset[str] = frozenset()
            if s.backfill == "safe" and not (s.reclaim and job.may_requeue and job.priority < head.priority):
                exclude = head_nodes
            nodes = self.cluster.place_gang(job, need, exclude, room_for=self._room_for(job))
            if nodes is not None:
                how = "on nodes it cannot use" if exclude else "(it can take them back)"
                self.admit(job, nodes, f"backfill behind {head.key} {how}", behind)
                continue
            if exclude and self.cluster.shape(job).capacity() >= need:
                reason = f"would delay {head.key}: it fits only on nodes the head is waiting for"
            elif position <= DETAILED_REASONS:
                why = self.blocking(job, need)
                reason = f"behind {head.key}, and does not fit: {why.message}"
                behind.update(why.inputs)
            else:  # deep in a long queue: a cheap reason (the detailed one costs a pass over the nodes)
                room = self.cluster.shape(job).total
                reason = f"behind {head.key}, and does not fit: room for {room} of {need} workers"
            self.decide(Decision(job.key, Action.WAIT, 0, reason=reason, inputs=behind))
        return head, head_nodes

    # -- 3. grow -------------------------------------------------------------------------------------------------
    def _room_for(self, job: Job) -> int:
        """How many workers an admitted job's node should have room for: a job without measurements grows at
        admission (as far as one node takes, `Settings.first_on_one_node`), so its minimum goes where that growth
        fits too; a job spread over more nodes than needed loses throughput to cross-node communication. Placing
        it there at once (not re-packing after growth) keeps the plan a fixpoint: capacity a re-pack freed would
        be left for the next plan to hand out."""
        if self.snapshot.settings.first_on_one_node and not job.throughput and self.snapshot.settings.grow:
            return job.max_workers
        return 0

    def grow(self, head: Job | None, head_nodes: frozenset[str]) -> None:
        s = self.settings
        if not s.grow:
            return
        candidates: list[Candidate] = []
        for job in self.jobs:
            decision = self.decisions.get(job.key)
            fresh = decision is not None and decision.action is Action.ADMIT
            if fresh:
                assert decision is not None
                size, nodes = decision.target, list(decision.add_nodes)
            elif (
                job.phase is Phase.RUNNING
                and not job.busy
                and not self.touched(job)
                and job.min_workers <= job.size < job.max_workers
                and not in_cooldown(job, self.now, cooldown(job, s))
            ):
                size, nodes = job.size, [w.node for w in job.workers]
            else:
                continue
            if size >= job.max_workers:
                continue
            exclude: frozenset[str] = frozenset()
            if head is not None and not (s.reclaim and job.may_shrink and job.priority <= head.priority):
                exclude = head_nodes
            candidates.append(Candidate(job, size, nodes, fresh, exclude))
        grow(self.cluster, candidates, s)
        donors: list[Donor] = []
        if s.rebalance:
            grown = {c.job.key for c in candidates if c.added}
            able = [
                j
                for j in self.jobs
                if j.phase is Phase.RUNNING
                and not j.busy
                and not self.touched(j)
                and j.key not in grown
                and j.may_shrink
                and j.min_workers < j.size <= j.max_workers
                and not in_cooldown(j, self.now, cooldown(j, s))
            ]
            donors = rebalance(self.cluster, candidates, able, s)
        by_key = {j.key: j for j in self.jobs}
        for d in donors:
            to = sorted(set(d.to), key=lambda k: (by_key[k].priority, k))
            self.decide(
                Decision(
                    d.job.key,
                    Action.SHRINK,
                    d.planned,
                    remove_slots=tuple(sorted(w.slot for w in d.removed)),
                    reason=f"rebalance ({s.grow_mode}): {len(d.removed)} workers to {', '.join(to)}",
                    inputs={"for": to[0], "workers": d.job.size},
                )
            )
        for c in candidates:
            if not c.added:
                continue
            assert c.curve is not None
            before, after = c.curve.at(c.size, spans(c.nodes)), c.curve.at(c.planned, c.spans)
            if c.fresh:
                old = self.decisions[c.job.key]
                self.decisions[c.job.key] = Decision(
                    c.job.key,
                    Action.ADMIT,
                    c.planned,
                    add_nodes=(*old.add_nodes, *c.added),
                    reason=f"{old.reason}; {len(c.added)} more ({s.grow_mode})",
                    inputs={**old.inputs, "min_workers": c.size},
                )
            else:
                inputs: dict[str, InputValue] = {
                    "workers": c.size,
                    "nodes": c.spans,
                    "expected_before": before,
                    "expected_after": after,
                }
                reason = (
                    f"grow ({s.grow_mode}): {c.size} -> {c.planned} workers on {c.spans} nodes, expected "
                    f"{before:.3g} -> {after:.3g} samples/s pays for a {expected_pause(c.job, s):.3g} s pause "
                    f"within {max(cooldown(c.job, s), s.min_payoff_horizon_s):g} s"
                )
                left = remaining_time(c.job, s, c.curve) if s.grow_mode == "goodput" else None
                if left is not None:  # what weighed its claim against other jobs' (shortest remaining first)
                    inputs["remaining_s"] = round(left, 1)
                    reason += f"; {left:.0f} s of work left at its current speed"
                self.decide(
                    Decision(c.job.key, Action.GROW, c.planned, add_nodes=tuple(c.added), reason=reason, inputs=inputs)
                )


def plan(snapshot: Snapshot, now: float) -> Plan:
    """Decide admissions, reclaims and grows for one instant. Pure: same snapshot and `now`, same plan."""
    planner = _Planner(snapshot, now)
    planner.bounds()
    head, head_nodes = planner.walk()
    planner.grow(head, head_nodes)
    changes = [d for d in planner.decisions.values() if d.is_change]
    waits = [d for d in planner.decisions.values() if not d.is_change]
    return Plan(decisions=(*changes, *waits), queue=planner.queue)
