"""`apply_plan`: the snapshot a plan leads to, once the operator has carried it out. Pure.

This documents what each action means for the state the next `plan()` sees:

- admit: the job is running with one new worker per `add_nodes` entry; `last_rescale = now`.
- grow: new workers on `add_nodes` are added; `last_rescale = now`.
- shrink: `remove_slots` are gone (their capacity is free again); `last_rescale = now`.
- requeue: every worker is gone; the job is queued again with `queued_since = now` and `last_rescale = now`
  (which starts its requeue back-off).
- wait: nothing.

New workers get fresh slot indexes above every slot the job has ever shown (workers and leaving ones), so slot
indexes are never reused. Workers that were leaving are assumed gone (the operator deletes them once they have
checkpointed). `measured throughput` is left alone: it is whatever the trainers report next.
"""

from __future__ import annotations

from dataclasses import replace

from elastic_operator.policy.decision import Action, Plan
from elastic_operator.policy.snapshot import Job, Phase, Snapshot, Worker


def _new_workers(job: Job, nodes: tuple[str, ...]) -> tuple[Worker, ...]:
    start = max((w.slot for w in (*job.workers, *job.leaving)), default=-1) + 1
    return tuple(Worker(start + i, node) for i, node in enumerate(nodes))


def apply_plan(snapshot: Snapshot, plan: Plan, now: float) -> Snapshot:
    by_job = {d.job: d for d in plan.changes}
    jobs: list[Job] = []
    for job in snapshot.jobs:
        d = by_job.get(job.key)
        after = replace(job, leaving=()) if job.leaving else job
        if d is None:
            pass
        elif d.action is Action.ADMIT:
            after = replace(after, phase=Phase.RUNNING, workers=_new_workers(job, d.add_nodes), last_rescale=now)
        elif d.action is Action.GROW:
            after = replace(after, workers=(*job.workers, *_new_workers(job, d.add_nodes)), last_rescale=now)
        elif d.action is Action.SHRINK:
            gone = set(d.remove_slots)
            after = replace(after, workers=tuple(w for w in job.workers if w.slot not in gone), last_rescale=now)
        elif d.action is Action.REQUEUE:
            after = replace(after, phase=Phase.QUEUED, workers=(), last_rescale=now, queued_since=now)
        jobs.append(after)
    return replace(snapshot, jobs=tuple(jobs))
