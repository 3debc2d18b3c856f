"""What the controller remembers about a running job, kept in the TrainingJob's status (never in memory).

`JobRuntime` is the typed view of the status fields the controller owns; `from_status`/`to_status` convert from and
to the JSON stored in the API server, so an operator restart resumes exactly where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

QUEUED = "Queued"
STARTING = "Starting"
RUNNING = "Running"
RESCALING = "Rescaling"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
TERMINAL = frozenset({SUCCEEDED, FAILED})

# restart causes; only WORKER_FAILED consumes the failure budget
WORKER_FAILED = "workerFailed"
WORKER_LOST = "workerLost"
RENDEZVOUS_LOST = "rendezvousLost"
RESTART_CAUSES = (WORKER_FAILED, WORKER_LOST, RENDEZVOUS_LOST)

RESCALE_KINDS = ("grow", "shrink", "requeue")


@dataclass(frozen=True)
class Slot:
    """One worker position. Slot ids are never reused within a job, so pod names never collide with a pod of an
    earlier slot that is still terminating."""

    slot: int
    node: str
    seen: bool = False  # its pod has been observed at least once (so a missing pod means "lost", not "not yet")


@dataclass(frozen=True)
class Leaving:
    slot: int
    since: float  # when it was told to exit (seconds since the epoch)


@dataclass(frozen=True)
class JobRuntime:
    phase: str = QUEUED
    rescale_generation: int = 0
    placement: tuple[Slot, ...] = ()  # the slots that should have a worker pod now
    members: tuple[int, ...] = ()  # the slots taking part in the current rescale generation
    leaving: tuple[Leaving, ...] = ()  # slots told to checkpoint and exit; deleted on ack or deadline
    next_slot: int = 0
    rendezvous_pod: str = ""
    rendezvous_seen: bool = False
    rendezvous_count: int = 0
    restarts: Mapping[str, int] = field(default_factory=dict)
    rescales: Mapping[str, int] = field(default_factory=dict)
    recent_failures: tuple[float, ...] = ()  # times of recent budget-consuming failures (crash-loop breaker)
    start_time: float | None = None
    completion_time: float | None = None
    last_rescale_time: float | None = None
    generation_started: float | None = None  # when the current rescale generation was opened
    last_rescale_pause_s: float | None = None  # how long training stood still in the latest rescale
    message: str = ""

    @property
    def slots(self) -> tuple[int, ...]:
        return tuple(s.slot for s in self.placement)

    def node_of(self, slot: int) -> str | None:
        return next((s.node for s in self.placement if s.slot == slot), None)

    def leaving_slots(self) -> frozenset[int]:
        return frozenset(item.slot for item in self.leaving)

    def with_restart(self, cause: str) -> JobRuntime:
        counts = dict(self.restarts)
        counts[cause] = counts.get(cause, 0) + 1
        return replace(self, restarts=counts)

    def with_rescale(self, kind: str, now: float) -> JobRuntime:
        counts = dict(self.rescales)
        counts[kind] = counts.get(kind, 0) + 1
        return replace(self, rescales=counts, last_rescale_time=now)


def _ts(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _float(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_status(status: Mapping[str, Any] | None) -> JobRuntime:
    """Read the controller's part of a TrainingJob status (missing fields take their defaults)."""
    s = dict(status or {})
    ctl = dict(s.get("controller") or {})
    return JobRuntime(
        phase=str(s.get("phase") or QUEUED),
        rescale_generation=int(s.get("rescaleGeneration") or 0),
        placement=tuple(
            Slot(int(p["slot"]), str(p["node"]), bool(p.get("seen", False))) for p in ctl.get("placement") or []
        ),
        members=tuple(int(m) for m in ctl.get("members") or []),
        leaving=tuple(Leaving(int(x["slot"]), float(_ts(x.get("since")) or 0.0)) for x in ctl.get("leaving") or []),
        next_slot=int(ctl.get("nextSlot") or 0),
        rendezvous_pod=str(ctl.get("rendezvousPod") or ""),
        rendezvous_seen=bool(ctl.get("rendezvousSeen", False)),
        rendezvous_count=int(ctl.get("rendezvousCount") or 0),
        restarts={k: int(v) for k, v in (s.get("restarts") or {}).items() if v},
        rescales={k: int(v) for k, v in (s.get("rescales") or {}).items() if v},
        recent_failures=tuple(float(_ts(t) or 0.0) for t in ctl.get("recentFailures") or []),
        start_time=_ts(s.get("startTime")),
        completion_time=_ts(s.get("completionTime")),
        last_rescale_time=_ts(s.get("lastRescaleTime")),
        generation_started=_ts(ctl.get("generationStarted")),
        last_rescale_pause_s=_float(s.get("lastRescalePauseSeconds")),
        message=str(s.get("message") or ""),
    )


def to_status(rt: JobRuntime) -> dict[str, Any]:
    """The status fields the controller owns, ready for a merge patch (None deletes a field)."""
    return {
        "phase": rt.phase,
        "rescaleGeneration": rt.rescale_generation,
        "workers": {"current": len(rt.members), "target": len(rt.placement)},
        "restarts": {cause: rt.restarts.get(cause, 0) for cause in RESTART_CAUSES},
        "rescales": {kind: rt.rescales.get(kind, 0) for kind in RESCALE_KINDS},
        "startTime": iso(rt.start_time),
        "completionTime": iso(rt.completion_time),
        "lastRescaleTime": iso(rt.last_rescale_time),
        "lastRescalePauseSeconds": rt.last_rescale_pause_s,
        "message": rt.message,
        "controller": {
            "placement": [{"slot": s.slot, "node": s.node, "seen": s.seen} for s in rt.placement],
            "members": list(rt.members),
            "leaving": [{"slot": x.slot, "since": iso(x.since)} for x in rt.leaving],
            "nextSlot": rt.next_slot,
            "rendezvousPod": rt.rendezvous_pod,
            "rendezvousSeen": rt.rendezvous_seen,
            "rendezvousCount": rt.rendezvous_count,
            "recentFailures": [iso(t) for t in rt.recent_failures],
            "generationStarted": iso(rt.generation_started),
        },
    }
