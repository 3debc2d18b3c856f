"""One round of a sweep as a pure function: `decide(sweep, trials, now) -> SweepPlan`.

Inputs: the TuningSweep (spec and the status the operator wrote last) and the trial TrainingJobs as observed.
Output: trials to create (number, params, priority), trials to stop (with a reason), the promising trial, the new
status (trial records, counts, best trial, phase, conditions) and the events to post.

Order of truth: `status.trials` is the study. A new trial is first recorded (Pending, with its params) and only
then created, so after a crash the record is found without a job and the job is created from the record: nothing
is lost and nothing is asked twice. A decision to stop a trial is recorded too (state Pruned) before the stop
annotation is set, and every round re-applies the annotation to recorded-but-running stopped trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from elastic_operator.api.common import Condition
from elastic_operator.api.tuningsweep import (
    MAX_INTERMEDIATE,
    MAX_TRIALS,
    BestTrial,
    TrialCounts,
    TrialRecord,
    TuningSweep,
    TuningSweepStatus,
    trial_name,
)
from elastic_operator.api.validation import parse_status
from elastic_operator.sweep import space, study
from elastic_operator.sweep.space import Params
from elastic_operator.sweep.trials import PRIORITY_BUMP, TrialJob, from_job

ALIVE: Final = ("Pending", "Running")
TERMINAL_PHASES: Final = ("Succeeded", "Failed")

# sweep-level stop causes: (condition type / event reason, phase, stop annotation text)
MAX_FAILED: Final = ("MaxFailedTrialsExceeded", "Failed", "sweep failed")
TARGET: Final = ("TargetReached", "Succeeded", "target reached")
BUDGET: Final = ("BudgetExhausted", "Succeeded", "budget exhausted")


@dataclass(frozen=True)
class NewTrial:
    number: int
    name: str
    params: Params
    priority: int


@dataclass(frozen=True)
class StopTrial:
    number: int
    name: str
    reason: str


@dataclass(frozen=True)
class SweepEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class SweepPlan:
    phase: str
    create: tuple[NewTrial, ...]
    stop: tuple[StopTrial, ...]
    promising: int | None
    """Number of the best running trial (it gets the priority bump), None when no running trial has values."""
    priorities: Mapping[int, int]
    """Priority of every alive trial: the template's, plus PRIORITY_BUMP for the promising one."""
    status: dict[str, Any]
    """The complete new status, wire form (merge-patch it as `{"status": ...}`)."""
    events: tuple[SweepEvent, ...]
    best: BestTrial | None
    counts: TrialCounts
    stop_cause: str | None = None
    """MaxFailedTrialsExceeded, TargetReached, BudgetExhausted or SweepFinished while the sweep stops trials."""
    gpu_hours_used: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)


def iso(t: float) -> datetime:
    return datetime.fromtimestamp(int(t), UTC)


def _seconds(t: datetime | None) -> float | None:
    return None if t is None else t.timestamp()


def effective_max_trials(sweep: TuningSweep) -> int:
    spec = sweep.spec
    if spec.algorithm.name == "grid":
        return min(spec.max_trials, space.grid_size(spec))
    return spec.max_trials


def _last(record: TrialRecord) -> float | None:
    inter = study.intermediate_of(record)
    return inter[max(inter)] if inter else None


def _meets(sweep: TuningSweep, value: float) -> bool:
    target = sweep.spec.objective.target
    if target is None:
        return False
    return value >= target if sweep.spec.objective.direction == "maximize" else value <= target


def best_of(sweep: TuningSweep, records: Iterable[TrialRecord]) -> TrialRecord | None:
    best: TrialRecord | None = None
    for r in sorted(records, key=lambda r: r.number):
        if r.state != "Succeeded" or r.value is None:
            continue
        if best is None or study.better(sweep.spec, r.value, best.value):  # type: ignore[arg-type]
            best = r
    return best


def leader(sweep: TuningSweep, records: Iterable[TrialRecord]) -> int | None:
    """The promising trial: among running trials with intermediate values, the best latest value (ties: lowest
    number). Values at different progress are compared as they are: a trial that is further along and still good
    is the one worth growing."""
    best: tuple[int, float] | None = None
    for r in sorted(records, key=lambda r: r.number):
        v = _last(r) if r.state == "Running" else None
        if v is not None and (best is None or study.better(sweep.spec, v, best[1])):
            best = (r.number, v)
    return None if best is None else best[0]


def _thin(record: TrialRecord, pts: study.Points) -> dict[str, float]:
    """Keep the values on the current points (median's interval may have doubled) and the final one."""
    inter = study.intermediate_of(record)
    if not inter:
        return {}
    top = max(inter)
    keep = {k: v for k, v in inter.items() if pts.contains(k) or (k == top and record.state == "Succeeded")}
    while len(keep) > MAX_INTERMEDIATE:
        keep.pop(min(keep))
    return {str(k): v for k, v in sorted(keep.items())}


def decide(
    sweep: TuningSweep,
    trials: Iterable[TrialJob | Mapping[str, Any]],
    now: float,
    *,
    accounted_until: float | None = None,
) -> SweepPlan:
    """The next step of `sweep` given its trial jobs. `accounted_until`: when GPU use was last added to
    status.gpuHoursUsed (the caller's previous round); None adds nothing this round."""
    spec = sweep.spec
    meta = sweep.metadata
    name = meta.name or ""
    prev = sweep.status or TuningSweepStatus()
    seed = spec.algorithm.seed if spec.algorithm.seed is not None else study.default_seed(meta.uid or name)
    jobs: dict[int, TrialJob] = {}
    for t in trials:
        seen = t if isinstance(t, TrialJob) else from_job(t)
        # numbers from MAX_TRIALS on are no trial of ours (a sweep never creates them; recording one would make
        # a status the API server refuses): such a job is left alone
        if seen.number is not None and seen.number < MAX_TRIALS and seen.name == trial_name(name, seen.number):
            jobs[seen.number] = seen
    events: list[SweepEvent] = []
    records: dict[int, TrialRecord] = {r.number: r.model_copy(deep=True) for r in prev.trials}
    next_number = max([prev.next_trial_number, *(n + 1 for n in records)])

    # adopt trial jobs that have no record (their record was lost): never run a number twice
    for number, orphan in sorted(jobs.items()):
        if number in records:
            continue
        recorded = dict(orphan.params_text or {})
        fits = space.parse(spec, recorded) is not None
        try:
            records[number] = TrialRecord(number=number, params=recorded, state="Pending" if fits else "Failed")
        except ValidationError:  # its params annotation is not one we wrote: adopt it as failed, without them
            records[number] = TrialRecord(number=number, params={}, state="Failed")
        next_number = max(next_number, number + 1)
        events.append(SweepEvent("Warning", "TrialAdopted", f"trial {orphan.name} had no record; adopted"))

    metric, kind = spec.objective.metric, spec.early_stopping.resource
    first_done = min((r for r in records.values() if r.state == "Succeeded"), key=lambda r: r.number, default=None)
    learned_max = max(study.intermediate_of(first_done), default=None) if first_done else None
    max_seen = max(
        [0]
        + [k for r in records.values() for k in study.intermediate_of(r)]
        + [j.resource(kind) or 0 for j in jobs.values()]
    )
    pts = study.points(spec, max_seen, learned_max)

    # 1. fold what the trial jobs show into the records; collect new resource points of alive trials
    pending_points: dict[int, tuple[tuple[int, float], ...]] = {}
    for number in sorted(records):
        r = records[number]
        if r.state not in ALIVE:
            continue
        job = jobs.get(number)
        tname = trial_name(name, number)
        if job is None:
            if r.state == "Running":
                r.state = "Failed"
                events.append(SweepEvent("Warning", "TrialFailed", f"trial {tname}: its TrainingJob disappeared"))
            continue
        res, val = job.resource(kind), job.metrics.get(metric)
        inter = study.intermediate_of(r)
        fresh: list[tuple[int, float]] = []
        if res is not None and val is not None and math.isfinite(val):
            fresh = [(p, val) for p in pts.upto(res) if p not in inter]
        if job.phase == "Failed":
            r.state = "Failed"
            events.append(SweepEvent("Warning", "TrialFailed", f"trial {tname} failed: {job.message}"[:1024]))
        elif job.phase == "Succeeded":
            inter.update(fresh)
            stopped = job.stop_reason is not None or job.message.startswith("stopped:")
            if stopped:
                r.state, r.value = "Pruned", (inter[max(inter)] if inter else None)
                events.append(SweepEvent("Normal", "TrialStopped", f"trial {tname} stopped: {job.message}"[:1024]))
            elif val is None or not math.isfinite(val):
                r.state = "Failed"
                events.append(
                    SweepEvent("Warning", "TrialFailed", f"trial {tname} finished without reporting {metric}")
                )
            else:
                r.state, r.value = "Succeeded", val
                if res is not None:
                    inter[res] = val
                events.append(SweepEvent("Normal", "TrialSucceeded", f"trial {tname}: {metric}={val:.6g}"))
            r.intermediate = {str(k): v for k, v in sorted(inter.items())}
        else:
            r.state = "Pending" if job.phase in ("", "Queued", "Starting") else "Running"
            if fresh:
                pending_points[number] = tuple(fresh)

    # 2. sweep-level facts: failures, target, budget
    start = _seconds(prev.start_time) or now
    used = prev.gpu_hours_used
    if accounted_until is not None and now > accounted_until:
        span = now - accounted_until
        used += sum(j.workers * j.gpus_per_worker * span for j in jobs.values() if not j.finished) / 3600.0
    failed = sum(1 for r in records.values() if r.state == "Failed")
    best = best_of(sweep, records.values())
    budget = spec.budget
    over_gpu = budget is not None and budget.gpu_hours is not None and used >= budget.gpu_hours
    over_time = (
        budget is not None
        and budget.active_deadline_seconds is not None
        and now - start >= budget.active_deadline_seconds
    )
    sticky = prev.phase in TERMINAL_PHASES and prev.observed_generation == meta.generation
    cause: tuple[str, str, str] | None = None
    if sticky:
        cause = ("SweepFinished", prev.phase, "sweep finished")
    elif failed > spec.max_failed_trials:
        cause = MAX_FAILED
    elif best is not None and best.value is not None and _meets(sweep, best.value):
        cause = TARGET
    elif over_gpu or over_time:
        cause = BUDGET

    # 3. early stopping, judged on the values recorded before this round
    pruned: dict[int, int] = {}
    if cause is None and pending_points:
        checks = [study.PruneCheck(n, pts_) for n, pts_ in pending_points.items()]
        pruned = study.prune(spec, list(records.values()), checks, pts)
    for number, fresh_points in pending_points.items():
        r = records[number]
        inter = study.intermediate_of(r)
        cut = pruned.get(number)
        inter.update((p, v) for p, v in fresh_points if cut is None or p <= cut)
        r.intermediate = {str(k): v for k, v in sorted(inter.items())}
        if cut is not None:
            r.state, r.value = "Pruned", inter[cut]
            policy = spec.early_stopping.policy
            events.append(
                SweepEvent(
                    "Normal",
                    "TrialPruned",
                    f"trial {trial_name(name, number)} pruned by {policy} at {kind} {cut}: {metric}={inter[cut]:.6g}",
                )
            )

    # 4. a stopping sweep stops its alive trials (recorded first, then annotated)
    if cause is not None:
        for number in sorted(records):
            r = records[number]
            if r.state in ALIVE:
                r.state, r.value = "Pruned", _last(r)
                if number in jobs:
                    events.append(SweepEvent("Normal", "TrialStopped", f"trial {trial_name(name, number)}: {cause[2]}"))

    # 5. new trials, and Pending records whose job does not exist yet
    template_priority = spec.trial_template.spec.priority
    create: list[NewTrial] = []
    max_eff = effective_max_trials(sweep)
    for number in sorted(records):
        r = records[number]
        if r.state == "Pending" and number not in jobs:
            parsed = space.parse(spec, r.params)
            if parsed is None:
                r.state = "Failed"
                events.append(
                    SweepEvent("Warning", "TrialFailed", f"trial {number}: its params no longer fit the search space")
                )
                continue
            create.append(NewTrial(number, trial_name(name, number), parsed, template_priority))
    alive = sum(1 for r in records.values() if r.state in ALIVE)
    if cause is None:
        count = min(spec.parallelism - alive, max_eff - next_number)
        for i, params in enumerate(study.suggest(spec, list(records.values()), seed, max(0, count))):
            number = next_number + i
            tname = trial_name(name, number)
            records[number] = TrialRecord(number=number, params=space.to_text(params), state="Pending")
            create.append(NewTrial(number, tname, params, template_priority))
            shown = ", ".join(f"{k}={v}" for k, v in space.to_text(params).items())
            events.append(SweepEvent("Normal", "TrialCreated", f"trial {tname}: {shown}"[:1024]))
        next_number += max(0, count)

    # 6. stop annotations (level-based), the promising trial, priorities
    stop: list[StopTrial] = []
    for number, r in sorted(records.items()):
        trial = jobs.get(number)
        if r.state == "Pruned" and trial and not trial.finished and not trial.deleting and not trial.stop_reason:
            stop.append(StopTrial(number, trial.name, cause[2] if cause is not None else "pruned"))
    promising = leader(sweep, records.values()) if cause is None else None
    priorities = {
        n: template_priority + (PRIORITY_BUMP if n == promising else 0) for n, r in records.items() if r.state in ALIVE
    }

    # 7. phase, counts, best, conditions, status
    all_done = all(r.state not in ALIVE for r in records.values())
    if cause is not None:
        phase = cause[1]
    elif all_done and next_number >= max_eff:
        phase = "Succeeded"
    else:
        phase = "Running"
    counts = TrialCounts(
        total=len(records),
        pending=sum(1 for r in records.values() if r.state == "Pending"),
        running=sum(1 for r in records.values() if r.state == "Running"),
        succeeded=sum(1 for r in records.values() if r.state == "Succeeded"),
        pruned=sum(1 for r in records.values() if r.state == "Pruned"),
        failed=sum(1 for r in records.values() if r.state == "Failed"),
    )
    best_trial = (
        BestTrial(
            number=best.number, job_name=trial_name(name, best.number), params=dict(best.params), value=best.value
        )
        if best is not None and best.value is not None
        else None
    )
    old_best = prev.best_trial
    if best_trial is not None and (old_best is None or old_best.number != best_trial.number):
        events.append(
            SweepEvent("Normal", "NewBestTrial", f"trial {best_trial.job_name}: {metric}={best_trial.value:.6g}")
        )
    message = _message(sweep, phase, cause, counts, max_eff, best_trial, used)
    if phase != prev.phase or not prev.start_time:
        if phase in TERMINAL_PHASES:
            events.append(SweepEvent("Warning" if phase == "Failed" else "Normal", f"Sweep{phase}", message[:1024]))
        if cause is not None and cause[0] != "SweepFinished" and phase != prev.phase:
            events.append(SweepEvent("Warning" if phase == "Failed" else "Normal", cause[0], message[:1024]))
    terminal = phase in TERMINAL_PHASES
    was_terminal = prev.phase in TERMINAL_PHASES and prev.completion_time is not None
    completion = (prev.completion_time if was_terminal else iso(now)) if terminal else None
    for r in records.values():
        r.intermediate = _thin(r, study.points(spec, max_seen, learned_max))
    status = TuningSweepStatus(
        phase=phase,  # type: ignore[arg-type]
        message=message,
        conditions=[],
        observed_generation=meta.generation,
        trial_counts=counts,
        best_trial=best_trial,
        trials=[records[n] for n in sorted(records)],
        next_trial_number=next_number,
        gpu_hours_used=round(used, 6),
        start_time=prev.start_time or iso(now),
        completion_time=completion,
    ).to_json()
    status["conditions"] = conditions(
        [c.to_json() for c in prev.conditions], _wanted(phase, cause, message), now, meta.generation
    )
    return SweepPlan(
        phase=phase,
        create=tuple(create),
        stop=tuple(stop),
        promising=promising,
        priorities=priorities,
        status=status,
        events=tuple(events),
        best=best_trial,
        counts=counts,
        stop_cause=cause[0] if cause else None,
        gpu_hours_used=used,
    )


def _message(
    sweep: TuningSweep,
    phase: str,
    cause: tuple[str, str, str] | None,
    counts: TrialCounts,
    max_eff: int,
    best: BestTrial | None,
    used: float,
) -> str:
    spec = sweep.spec
    best_text = f"; best {spec.objective.metric}={best.value:.6g} (trial {best.number})" if best else ""
    if cause == MAX_FAILED:
        return f"{counts.failed} trials failed (maxFailedTrials is {spec.max_failed_trials}){best_text}"
    if cause == TARGET:
        return f"objective target {spec.objective.target} reached{best_text}"
    if cause == BUDGET:
        return f"budget exhausted ({used:.3f} GPU-hours used){best_text}"
    if cause is not None:
        return (sweep.status.message if sweep.status else "") or f"sweep {phase.lower()}"
    if phase == "Succeeded":
        return f"all {max_eff} trials finished{best_text}"
    return (
        f"{counts.total}/{max_eff} trials created: {counts.running} running, {counts.pending} pending, "
        f"{counts.succeeded} succeeded, {counts.pruned} pruned, {counts.failed} failed{best_text}"
    )


def _wanted(phase: str, cause: tuple[str, str, str] | None, message: str) -> dict[str, tuple[bool, str, str]]:
    """condition type -> (true?, reason, message)."""
    reason = cause[0] if cause is not None and cause[0] != "SweepFinished" else phase
    out = {
        "Running": (phase == "Running", phase, message),
        "Succeeded": (phase == "Succeeded", reason, message),
        "Failed": (phase == "Failed", reason, message),
    }
    if cause is not None and cause[0] in (TARGET[0], BUDGET[0], MAX_FAILED[0]):
        out[cause[0]] = (True, cause[0], message)
    return out


def conditions(
    existing: Sequence[Mapping[str, Any]],
    wanted: Mapping[str, tuple[bool, str, str]],
    now: float,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Kubernetes conditions: lastTransitionTime changes only when a condition's status does. Conditions not in
    `wanted` are kept as they are, except InvalidSpec, which only `invalid_status` sets."""
    by_type = {str(c.get("type")): dict(c) for c in existing}
    out: list[dict[str, Any]] = []
    for ctype, (truth, reason, message) in wanted.items():
        status = "True" if truth else "False"
        old = by_type.pop(ctype, None)
        since = old.get("lastTransitionTime") if old is not None and old.get("status") == status else None
        cond: dict[str, Any] = {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message[:2048],
            "lastTransitionTime": since or iso(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)
    out.extend(c for t, c in by_type.items() if t != "InvalidSpec")
    return out[:16]


def invalid_status(
    raw_status: Mapping[str, Any] | None, issues: Sequence[tuple[str, str]], generation: int | None, now: float
) -> tuple[dict[str, Any], SweepEvent]:
    """The status patch and event for a sweep whose spec does not validate: phase Failed and an InvalidSpec
    condition naming every offending field. Trials already recorded are left alone."""
    message = "; ".join(f"{path}: {msg}" for path, msg in issues)[:2000] or "invalid spec"
    raw = raw_status if isinstance(raw_status, Mapping) else {}
    stored = raw.get("conditions")
    # a stored entry that is no condition (an older operator, a second writer) is dropped, not copied back
    existing = [c for c in stored if parse_status(Condition, c) is not None] if isinstance(stored, list) else []
    others = [c for c in existing if c.get("type") != "InvalidSpec"]
    old = next((c for c in existing if c.get("type") == "InvalidSpec"), None)
    cond = {
        "type": "InvalidSpec",
        "status": "True",
        "reason": "InvalidSpec",
        "message": message,
        "lastTransitionTime": (old or {}).get("lastTransitionTime")
        if (old or {}).get("status") == "True"
        else iso(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    patch = {
        "phase": "Failed",
        "message": f"invalid spec: {message}",
        "observedGeneration": generation,
        "conditions": [*others, cond][-16:],
    }
    return patch, SweepEvent("Warning", "InvalidSpec", message[:1024])
