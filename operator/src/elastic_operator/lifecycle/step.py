"""One level-based reconciliation step of a TrainingJob, as a pure function.

`advance(inputs, now)` looks at what the job's status says should be (JobRuntime), what really exists (its pods),
what the trainers reported, and at most one scheduling change from `policy.plan()`; it returns the next runtime
state plus the pods to create and delete and the events to post. Running it again on its own output, with nothing
changed in the world, changes nothing: the handlers can apply it at any time, after any crash.

The rescale protocol (docs/design.md): members of generation g run torchrun with --nnodes=N:N and
--rdzv-id=<uid>-g<g>. Growing creates pods first and opens g+1 only when they all run; shrinking opens g+1 without
the leaving slots, tells them to exit and deletes them once they reported (or a deadline passed); a lost worker
opens g+1 without it, or requeues the job when fewer than minWorkers remain.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from elastic_operator.lifecycle.state import (
    FAILED,
    QUEUED,
    RENDEZVOUS_LOST,
    RESCALING,
    RUNNING,
    STARTING,
    SUCCEEDED,
    SUSPENDED,
    TERMINAL,
    WORKER_FAILED,
    WORKER_LOST,
    JobRuntime,
    Leaving,
    Slot,
)

# trainer report states (elastic_trainer.contract) that mean "this pod is done with the generation it reported"
DONE_STATES = frozenset({"exited", "succeeded"})


@dataclass(frozen=True)
class JobSpecFacts:
    """The parts of a TrainingJob spec the lifecycle needs."""

    name: str
    min_workers: int
    max_workers: int
    suspend: bool = False
    active_deadline_s: float | None = None
    failure_budget: int = 3  # worker failures (not rescales, not lost nodes) tolerated before the job fails
    crash_loop_failures: int = 3  # this many budget-consuming failures ...
    crash_loop_window_s: float = 300.0  # ... within this window trip the breaker
    stop_reason: str = ""  # set (annotation elastic.training/stop) when a sweep prunes a trial: exit cleanly


@dataclass(frozen=True)
class PodFacts:
    name: str
    role: str  # "worker" | "rendezvous"
    slot: int | None
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    node: str = ""
    ip: str = ""
    deleting: bool = False
    exit_code: int | None = None
    disrupted: bool = False  # evicted, node lost, pod-GC'd: not the training code's fault


@dataclass(frozen=True)
class ReportFacts:
    generation: int
    state: str
    time: float  # when the pod first reported this (generation, state)
    checkpoint_step: int | None = None
    pause_s: float | None = None  # the pod's own measure of how long training stood still before this generation


@dataclass(frozen=True)
class Change:
    """One scheduling decision for this job, from policy.plan()."""

    action: str  # admit | grow | shrink | requeue
    target: int
    add_nodes: tuple[str, ...] = ()
    remove_slots: tuple[int, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Timeouts:
    shrink_deadline_s: float = 60.0  # leaving workers get this long to checkpoint before they are deleted
    start_deadline_s: float = 600.0  # a generation that has not started by then is re-opened


@dataclass(frozen=True)
class Inputs:
    spec: JobSpecFacts
    runtime: JobRuntime
    pods: tuple[PodFacts, ...]
    reports: Mapping[str, ReportFacts]  # by pod name
    change: Change | None = None
    timeouts: Timeouts = Timeouts()


@dataclass(frozen=True)
class Step:
    runtime: JobRuntime
    create_workers: tuple[Slot, ...] = ()
    create_rendezvous: str = ""  # name of a rendezvous pod to create
    delete_pods: tuple[tuple[str, str], ...] = ()  # (pod name, why)
    events: tuple[Event, ...] = ()
    pause_s: float | None = None  # a rescale generation started running this step, after this long a pause

    @property
    def idle(self) -> bool:
        return not (self.create_workers or self.create_rendezvous or self.delete_pods or self.events)


def worker_pod_name(job: str, slot: int) -> str:
    return f"{job}-w{slot}"


def rendezvous_pod_name(job: str, count: int) -> str:
    return f"{job}-rdzv-{count}"


def mark_created(rt: JobRuntime, slots: Collection[int], rendezvous: bool) -> JobRuntime:
    """The runtime once the API server has stored the step's new pods (201 Created, not 409): they exist, so they
    count as seen (a pod seen and then gone is lost, one never seen is created again). Marked in the same status
    write as the step, not one round later when the watch delivers them: one status write fewer per admission and
    per rescale (bench/scale)."""
    if any(not s.seen and s.slot in slots for s in rt.placement):
        rt = replace(rt, placement=tuple(replace(s, seen=s.seen or s.slot in slots) for s in rt.placement))
    if rendezvous and rt.rendezvous_pod and not rt.rendezvous_seen:
        rt = replace(rt, rendezvous_seen=True)
    return rt


def active(pod: PodFacts) -> bool:
    return not pod.deleting and pod.phase in ("Pending", "Running", "Unknown")


class _Builder:
    """Accumulates the effects of one step (kept tiny: a step is a few transitions)."""

    def __init__(self, rt: JobRuntime, now: float) -> None:
        self.rt = rt
        self.initial = rt
        self.now = now
        self.creates: list[Slot] = []
        self.rendezvous = ""
        self.deletes: dict[str, str] = {}
        self.events: list[Event] = []
        self.pause_s: float | None = None

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def delete(self, pod: str, why: str) -> None:
        self.deletes.setdefault(pod, why)

    def build(self) -> Step:
        return Step(
            _bank_service(self.initial, self.rt, self.now),
            tuple(self.creates),
            self.rendezvous,
            tuple(self.deletes.items()),
            tuple(self.events),
            self.pause_s,
        )


def _bank_service(before: JobRuntime, after: JobRuntime, now: float) -> JobRuntime:
    """Bank attained service (worker-seconds) when the number of placed workers changes, and only then: a steady
    job's status is not rewritten every round; readers add `len(placement) * (now - attained_since)`."""
    old, new = len(before.placement), len(after.placement)
    if old == new and (new == 0 or after.attained_since is not None):
        return after
    banked = after.attained_s
    if after.attained_since is not None:
        banked += old * max(0.0, now - after.attained_since)
    return replace(after, attained_s=banked, attained_since=now if new else None)


def advance(inp: Inputs, now: float) -> Step:
    b = _Builder(inp.runtime, now)
    spec = inp.spec
    workers = {p.slot: p for p in inp.pods if p.role == "worker" and p.slot is not None}
    rendezvous = [p for p in inp.pods if p.role == "rendezvous"]

    if b.rt.phase in TERMINAL:
        # A finished job keeps its finished pods (their logs), like a Kubernetes Job, until it is deleted (its
        # ttlSecondsAfterFinished, or a user); pods still running go now.
        _release_everything(b, inp, workers, rendezvous)
        return b.build()

    # Stray pods: workers of slots we no longer track (e.g. left over from before a crash) go away.
    tracked = set(b.rt.slots) | b.rt.leaving_slots()
    for slot, pod in workers.items():
        if slot not in tracked and not pod.deleting:
            b.delete(pod.name, "not part of the job's placement")

    if _finished(b, inp, workers, now):
        return b.build()
    if _deadline_exceeded(b, inp, workers, rendezvous, now):
        return b.build()

    _mark_seen(b, workers, rendezvous)
    _handle_losses(b, inp, workers, rendezvous, now)
    if b.rt.phase == FAILED:
        _release_everything(b, inp, workers, rendezvous)
        return b.build()

    if spec.stop_reason:
        _stop(b, spec.stop_reason, now)
    elif spec.suspend:
        _suspend(b, inp, workers, now)
    elif b.rt.phase == SUSPENDED:
        b.rt = replace(b.rt, phase=QUEUED, message="resumed: waiting for capacity")
        b.event("Resumed", "suspend was cleared; the job is queued and resumes from its last checkpoint")
    elif inp.change is not None:
        _apply_change(b, inp, now)

    _retry_failed_generation(b, inp, workers, now)
    _progress_generation(b, inp, workers, now)
    _retire_leaving(b, inp, workers, now)
    _ensure_pods(b, inp, workers, rendezvous)
    return b.build()


def _mark_seen(b: _Builder, workers: Mapping[int, PodFacts], rendezvous: list[PodFacts]) -> None:
    if any(not s.seen and s.slot in workers for s in b.rt.placement):
        b.rt = replace(b.rt, placement=tuple(replace(s, seen=s.seen or s.slot in workers) for s in b.rt.placement))
    if b.rt.rendezvous_pod and not b.rt.rendezvous_seen and any(p.name == b.rt.rendezvous_pod for p in rendezvous):
        b.rt = replace(b.rt, rendezvous_seen=True)


def _finished(b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], now: float) -> bool:
    """Success when a worker reported that training completed, or every member pod Succeeded.

    A success report counts from any generation, not only the current one: training can finish in generation g
    just as the operator opens g+1 for a rescale (the members had not yet been told), and then g+1 can never form.
    Finished training stays finished (its final checkpoint is the result), so the job is complete either way."""
    rt = b.rt
    if not rt.members:
        return False
    member_pods = [workers.get(m) for m in rt.members]
    reported = any(
        (r := inp.reports.get(p.name)) is not None and r.state == "succeeded" and r.generation <= rt.rescale_generation
        for p in workers.values()
    )
    all_pods_done = all(p is not None and p.phase == "Succeeded" for p in member_pods)
    if not (reported or all_pods_done):
        return False
    # the placement goes in the same status write: pods still holding resources count as foreign usage until they
    # are gone, so capacity is not given twice, and no second write per job just to clear it (bench/scale)
    b.rt = replace(
        rt, phase=SUCCEEDED, completion_time=now, placement=(), members=(), leaving=(), message="training completed"
    )
    b.event("Completed", f"training completed with {len(rt.members)} workers")
    for p in inp.pods:
        if active(p) and p.phase != "Succeeded" and (p.role == "rendezvous" or not reported):
            b.delete(p.name, "job completed")
    if reported:  # the trainer said it is done: the remaining pods just exit on their own directive
        for slot in rt.members:
            pod = workers.get(slot)
            if pod is not None and active(pod) and pod.phase != "Running":
                b.delete(pod.name, "job completed")
    return True


def _deadline_exceeded(
    b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], rendezvous: list[PodFacts], now: float
) -> bool:
    ads = inp.spec.active_deadline_s
    if ads is None or b.rt.start_time is None or now - b.rt.start_time <= ads:
        return False
    b.rt = replace(b.rt, phase=FAILED, completion_time=now, message=f"activeDeadlineSeconds ({ads:.0f}s) exceeded")
    b.event("DeadlineExceeded", b.rt.message, warning=True)
    _release_everything(b, inp, workers, rendezvous)
    return True


def _release_everything(b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], rendezvous: list[PodFacts]) -> None:
    for p in inp.pods:
        if active(p):
            b.delete(p.name, f"job {b.rt.phase.lower()}")
    if b.rt.placement or b.rt.members or b.rt.leaving:
        b.rt = replace(b.rt, placement=(), members=(), leaving=())


def _handle_losses(
    b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], rendezvous: list[PodFacts], now: float
) -> None:
    rt = b.rt
    lost: list[tuple[Slot, str, str]] = []  # (slot, cause, detail)
    for s in rt.placement:
        pod = workers.get(s.slot)
        if pod is None:
            if s.seen:
                lost.append((s, WORKER_LOST, "its pod was deleted"))
        elif pod.phase == "Failed" or (pod.deleting and s.slot not in rt.leaving_slots()):
            if pod.disrupted or pod.deleting or pod.exit_code is None:
                lost.append((s, WORKER_LOST, f"pod {pod.name} was disrupted on node {pod.node}"))
            else:
                lost.append((s, WORKER_FAILED, f"pod {pod.name} failed with exit code {pod.exit_code}"))
    rendezvous_lost = False
    if rt.rendezvous_pod and rt.rendezvous_seen:
        rdzv = next((p for p in rendezvous if p.name == rt.rendezvous_pod), None)
        rendezvous_lost = rdzv is None or not active(rdzv)
    if not lost and not rendezvous_lost:
        return

    lost_slots = {s.slot for s, _, _ in lost}
    for s, cause, detail in lost:
        rt = rt.with_restart(cause)
        if cause == WORKER_FAILED:
            rt = replace(rt, recent_failures=(*rt.recent_failures, now)[-10:])
        pod = workers.get(s.slot)
        if pod is not None and not pod.deleting:
            b.delete(pod.name, detail)
        b.event("WorkerFailed" if cause == WORKER_FAILED else "WorkerLost", f"slot {s.slot}: {detail}", warning=True)
    if rendezvous_lost:
        rt = rt.with_restart(RENDEZVOUS_LOST)
        b.event("RendezvousLost", f"rendezvous pod {rt.rendezvous_pod} is gone; starting a new one", warning=True)
        rt = replace(rt, rendezvous_pod="", rendezvous_seen=False)
    remaining = tuple(s for s in rt.placement if s.slot not in lost_slots)
    rt = replace(rt, placement=remaining, members=tuple(m for m in rt.members if m not in lost_slots))

    failures = rt.restarts.get(WORKER_FAILED, 0)
    recent = [t for t in rt.recent_failures if now - t <= inp.spec.crash_loop_window_s]
    if failures > inp.spec.failure_budget:
        b.rt = replace(rt, phase=FAILED, completion_time=now, message=f"failure budget exhausted ({failures} failures)")
        b.event("Failed", b.rt.message, warning=True)
        return
    if len(recent) >= inp.spec.crash_loop_failures:
        b.rt = replace(
            rt,
            phase=FAILED,
            completion_time=now,
            message=f"crash loop: {len(recent)} failures within {inp.spec.crash_loop_window_s:.0f}s",
        )
        b.event("CrashLoop", b.rt.message, warning=True)
        return
    if len(remaining) >= inp.spec.min_workers:
        rt = _open_generation(
            rt, tuple(s.slot for s in remaining), now, RESCALING if rt.phase != STARTING else STARTING
        )
        rt = replace(
            rt, message=f"continuing with {len(remaining)} workers after a loss (generation {rt.rescale_generation})"
        )
        b.event("Recovering", rt.message)
    else:
        rt = _requeue(b, rt, now, f"only {len(remaining)} workers left, below minWorkers")
    b.rt = rt


def _open_generation(rt: JobRuntime, members: tuple[int, ...], now: float, phase: str) -> JobRuntime:
    return replace(
        rt, rescale_generation=rt.rescale_generation + 1, members=members, phase=phase, generation_started=now
    )


def _requeue(b: _Builder, rt: JobRuntime, now: float, why: str) -> JobRuntime:
    """Every placed worker checkpoints and exits; the job goes back to the queue (capacity is held until the
    leaving pods are gone, so nothing is over-committed)."""
    b.event("Requeued", f"{why}; the job waits in the queue and resumes from its last checkpoint", warning=True)
    return replace(_all_leave(rt, now), phase=QUEUED, message=f"requeued: {why}")


def _all_leave(rt: JobRuntime, now: float) -> JobRuntime:
    """Every placed worker is told to checkpoint and exit, in a new generation that has no members."""
    leaving = tuple(Leaving(s.slot, now) for s in rt.placement if s.slot not in rt.leaving_slots())
    return replace(
        rt, placement=(), members=(), leaving=(*rt.leaving, *leaving), rescale_generation=rt.rescale_generation + 1
    )


def _suspend(b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], now: float) -> None:
    rt = b.rt
    if rt.phase == SUSPENDED and not rt.placement:
        return
    if rt.placement:
        rt = _all_leave(rt, now)
        b.event("Suspending", "suspend requested: workers checkpoint and exit")
    b.rt = replace(rt, phase=SUSPENDED, message="suspended; resumes from its last checkpoint when suspend is cleared")


def _stop(b: _Builder, reason: str, now: float) -> None:
    """Stop on request (a pruned sweep trial): every worker checkpoints and exits; then the job has succeeded."""
    rt = b.rt
    if rt.placement:
        rt = replace(_all_leave(rt, now), message=f"stopping: {reason}")
        b.event("Stopping", f"stop requested ({reason}): workers checkpoint and exit")
    if not rt.leaving:
        rt = replace(rt, phase=SUCCEEDED, completion_time=now, message=f"stopped: {reason}")
        b.event("Stopped", rt.message)
    b.rt = rt


def _apply_change(b: _Builder, inp: Inputs, now: float) -> None:
    ch, rt = inp.change, b.rt
    assert ch is not None
    if ch.action == "admit" and rt.phase == QUEUED and not rt.leaving:
        slots = tuple(Slot(rt.next_slot + i, node) for i, node in enumerate(ch.add_nodes))
        rt = replace(rt, placement=slots, next_slot=rt.next_slot + len(slots))
        rt = _open_generation(rt, tuple(s.slot for s in slots), now, STARTING)
        rt = replace(rt, start_time=rt.start_time or now, message=ch.reason)
        b.event("Admitted", f"admitted with {len(slots)} workers: {ch.reason}")
    elif ch.action == "grow" and rt.phase == RUNNING:
        new = tuple(Slot(rt.next_slot + i, node) for i, node in enumerate(ch.add_nodes))
        rt = replace(rt, placement=(*rt.placement, *new), next_slot=rt.next_slot + len(new), phase=RESCALING)
        rt = replace(rt.with_rescale("grow", now), message=ch.reason)
        b.event("Growing", f"growing {len(rt.members)} -> {len(rt.placement)} workers: {ch.reason}")
    elif ch.action == "shrink" and rt.phase == RUNNING:
        remove = set(ch.remove_slots)
        keep = tuple(s for s in rt.placement if s.slot not in remove)
        leaving = tuple(Leaving(s.slot, now) for s in rt.placement if s.slot in remove)
        rt = replace(rt, placement=keep, leaving=(*rt.leaving, *leaving))
        rt = _open_generation(rt, tuple(s.slot for s in keep), now, RESCALING)
        rt = replace(rt.with_rescale("shrink", now), message=ch.reason)
        b.event("Shrinking", f"shrinking to {len(keep)} workers: {ch.reason}")
    elif ch.action == "requeue" and rt.phase in (RUNNING, STARTING, RESCALING):
        rt = _requeue(b, rt.with_rescale("requeue", now), now, ch.reason)
    else:
        return
    b.rt = rt


def _retry_failed_generation(b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], now: float) -> None:
    """A member's launcher reported that the current generation failed (torchrun died, a peer was unreachable)
    while its pod lives on: open the next generation with the same members. Each such retry counts towards the
    crash-loop breaker, so a generation that can never start ends the job instead of looping."""
    rt = b.rt
    if rt.phase not in (STARTING, RESCALING, RUNNING) or not rt.members:
        return
    failed = [
        p.name
        for m in rt.members
        if (p := workers.get(m)) is not None
        and (r := inp.reports.get(p.name)) is not None
        and r.generation == rt.rescale_generation
        and r.state == "failed"
    ]
    if not failed:
        return
    recent = (*[t for t in rt.recent_failures if now - t <= inp.spec.crash_loop_window_s], now)
    if len(recent) >= inp.spec.crash_loop_failures:
        b.rt = replace(rt, phase=FAILED, completion_time=now, recent_failures=recent[-10:],
                       message=f"crash loop: generation failed {len(recent)} times within "
                       f"{inp.spec.crash_loop_window_s:.0f}s (last reported by {', '.join(failed)})")  # fmt: skip
        b.event("CrashLoop", b.rt.message, warning=True)
        _release_everything(b, inp, workers, [])
        return
    rt = _open_generation(rt, rt.members, now, RESCALING)
    b.rt = replace(rt, recent_failures=recent[-10:], message=f"generation {rt.rescale_generation - 1} failed on "
                   f"{', '.join(failed)}; retrying as generation {rt.rescale_generation}")  # fmt: skip
    b.event("GenerationFailed", b.rt.message, warning=True)


def _progress_generation(b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], now: float) -> None:
    rt = b.rt
    if rt.phase not in (STARTING, RESCALING) or not rt.placement:
        return
    pending = [s for s in rt.placement if s.slot not in rt.members]
    if pending:  # a grow: open the next generation once every new pod runs
        if all((p := workers.get(s.slot)) is not None and p.phase == "Running" for s in pending):
            b.rt = replace(
                _open_generation(rt, tuple(s.slot for s in rt.placement), now, RESCALING),
                message=f"generation {rt.rescale_generation + 1}: {len(rt.placement)} workers",
            )
        return
    started = all(
        (p := workers.get(m)) is not None
        and (r := inp.reports.get(p.name)) is not None
        and r.generation == rt.rescale_generation
        and r.state == "running"
        for m in rt.members
    )
    if started:
        b.rt = replace(rt, phase=RUNNING, message=f"running with {len(rt.members)} workers")
        pause = _pause(rt, inp, workers) if rt.phase == RESCALING else None
        if pause is None:
            b.event("Running", f"generation {rt.rescale_generation} running with {len(rt.members)} workers")
        else:
            b.pause_s = pause
            b.rt = replace(b.rt, last_rescale_pause_s=round(pause, 3))
            b.event(
                "Running",
                f"generation {rt.rescale_generation} running with {len(rt.members)} workers "
                f"after a {pause:.1f}s training pause",
            )
    elif rt.generation_started is not None and now - rt.generation_started > inp.timeouts.start_deadline_s:
        b.rt = replace(
            _open_generation(rt, rt.members, now, rt.phase),
            message=f"generation {rt.rescale_generation} did not start in time; reopened",
        )
        b.event("GenerationTimeout", b.rt.message, warning=True)


def _pause(rt: JobRuntime, inp: Inputs, workers: Mapping[int, PodFacts]) -> float | None:
    """How long training stood still for this rescale: the longest pause the members that trained before report
    (each launcher times its own stop -> running; the operator cannot see when a prepared generation takes over).
    None when no member trained before (a first start, a requeued job resuming)."""
    pauses = [
        r.pause_s
        for m in rt.members
        if (p := workers.get(m)) is not None and (r := inp.reports.get(p.name)) is not None and r.pause_s is not None
    ]
    return max(pauses) if pauses else None


def _retire_leaving(b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], now: float) -> None:
    rt = b.rt
    still: list[Leaving] = []
    for item in rt.leaving:
        pod = workers.get(item.slot)
        if pod is None:
            continue  # gone: done
        still.append(item)
        if pod.deleting:
            continue
        report = inp.reports.get(pod.name)
        acked = report is not None and report.state in DONE_STATES
        finished = pod.phase in ("Succeeded", "Failed")
        late = now - item.since > inp.timeouts.shrink_deadline_s
        if acked or finished or late or pod.phase == "Pending":
            why = (
                "checkpointed and exited"
                if acked or finished
                else "never started"
                if pod.phase == "Pending"
                else "deadline passed"
            )
            b.delete(pod.name, f"leaving slot {item.slot}: {why}")
    if len(still) != len(rt.leaving):
        b.rt = replace(rt, leaving=tuple(still))


def _ensure_pods(b: _Builder, inp: Inputs, workers: Mapping[int, PodFacts], rendezvous: list[PodFacts]) -> None:
    rt = b.rt
    if not rt.placement:
        # nothing to run: the rendezvous server goes too
        for p in rendezvous:
            if active(p):
                b.delete(p.name, "no workers placed")
        return
    if not rt.rendezvous_pod:
        count = rt.rendezvous_count + 1
        rt = replace(rt, rendezvous_pod=rendezvous_pod_name(inp.spec.name, count), rendezvous_count=count)
        b.rt = rt
    if not rt.rendezvous_seen:
        b.rendezvous = rt.rendezvous_pod
    for p in rendezvous:
        if p.name != rt.rendezvous_pod and active(p):
            b.delete(p.name, "replaced rendezvous pod")
    for s in rt.placement:
        if s.slot not in workers and not s.seen:
            b.creates.append(s)
