"""What each pod of a job should do now, derived from the job's runtime state (pure).

The report endpoint answers every trainer report with this; the launcher acts on it (elastic_trainer.contract).
"""

from __future__ import annotations

from dataclasses import dataclass

from elastic_operator.lifecycle.state import TERMINAL, JobRuntime

RUN = "run"
WAIT = "checkpoint-and-wait"
EXIT = "exit"


@dataclass(frozen=True)
class PodDirective:
    generation: int
    action: str
    nnodes: int
    rdzv_endpoint: str  # host:port of the job's rendezvous server; "" while it has no address yet
    rdzv_id: str  # <job uid>-g<generation>


def directive_for(rt: JobRuntime, slot: int | None, job_uid: str, rdzv_endpoint: str) -> PodDirective:
    g = rt.rescale_generation
    rdzv_id = f"{job_uid}-g{g}"
    nnodes = len(rt.members)
    if slot is None or rt.phase in TERMINAL or slot in rt.leaving_slots() or slot not in rt.slots:
        return PodDirective(g, EXIT, nnodes, rdzv_endpoint, rdzv_id)
    if slot in rt.members and rdzv_endpoint:
        return PodDirective(g, RUN, nnodes, rdzv_endpoint, rdzv_id)
    return PodDirective(g, WAIT, nnodes, rdzv_endpoint, rdzv_id)
