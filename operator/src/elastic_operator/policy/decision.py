"""What `plan()` returns: one decision per job it has something to say about, and the queue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from elastic_operator.policy.queue import QueueEntry

InputValue = str | int | float


class Action(StrEnum):
    ADMIT = "admit"  # start a queued job with `target` workers on `add_nodes`
    GROW = "grow"  # add workers on `add_nodes`
    SHRINK = "shrink"  # remove `remove_slots`
    REQUEUE = "requeue"  # remove every slot; the job goes back to the queue and resumes from its checkpoint
    WAIT = "wait"  # no change (queued jobs that stay queued, running jobs that could not be repaired)


CHANGES = frozenset({Action.ADMIT, Action.GROW, Action.SHRINK, Action.REQUEUE})


@dataclass(frozen=True)
class Decision:
    job: str
    action: Action
    target: int  # workers after the decision (0 for requeue, the current count for wait)
    add_nodes: tuple[str, ...] = ()  # one node per new worker; the operator pins each new pod to its node
    remove_slots: tuple[int, ...] = ()  # slots leaving (shrink, requeue)
    reason: str = ""
    inputs: Mapping[str, InputValue] = field(default_factory=dict)

    @property
    def is_change(self) -> bool:
        return self.action in CHANGES


@dataclass(frozen=True)
class Plan:
    decisions: tuple[Decision, ...]
    queue: tuple[QueueEntry, ...]  # every queued job, head first (including those admitted by this plan)

    def decision(self, job: str) -> Decision | None:
        return next((d for d in self.decisions if d.job == job), None)

    @property
    def changes(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.is_change)

    def queue_entry(self, job: str) -> QueueEntry | None:
        return next((e for e in self.queue if e.job == job), None)

    def by_job(self) -> dict[str, Decision]:
        return {d.job: d for d in self.decisions}
