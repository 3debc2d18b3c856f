"""Queue order: priority, then age, with aging so that a low-priority job cannot wait forever.

A queued job's effective priority is `priority + aging_per_hour * hours waited` (since it entered the queue). The
queue is sorted by its whole part (the class, high first; aging lifts a waiting job one class per point), then by
least attained service (a job that has run less goes first within its class, as in Tiresias: short jobs are not
stuck behind long ones that were requeued), then by when it entered the queue (old first), then by key.
Aging orders the queue only: reclaim always compares base priorities, so an aged job never preempts work of a
higher class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from elastic_operator.policy.snapshot import Job, Phase, Settings


@dataclass(frozen=True)
class QueueEntry:
    job: str
    position: int  # 1-based
    depth: int  # queued jobs in all
    effective_priority: float
    waiting_s: float

    @property
    def text(self) -> str:
        return f"position {self.position} of {self.depth}"


def effective_priority(job: Job, now: float, settings: Settings) -> float:
    waited = max(0.0, now - job.waiting_since)
    return job.priority + settings.aging_per_hour * waited / 3600.0


def order(jobs: tuple[Job, ...] | list[Job], now: float, settings: Settings) -> list[Job]:
    """The queued jobs of `jobs`, head first: by class (whole points of effective priority), then least attained
    service, then longest waiting."""
    queued = [j for j in jobs if j.phase is Phase.QUEUED]
    return sorted(
        queued,
        key=lambda j: (-math.floor(effective_priority(j, now, settings)), j.attained_s, j.waiting_since, j.key),
    )


def entries(queue: list[Job], now: float, settings: Settings) -> tuple[QueueEntry, ...]:
    depth = len(queue)
    return tuple(
        QueueEntry(
            job=j.key,
            position=i + 1,
            depth=depth,
            effective_priority=round(effective_priority(j, now, settings), 6),
            waiting_s=max(0.0, now - j.waiting_since),
        )
        for i, j in enumerate(queue)
    )
