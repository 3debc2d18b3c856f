"""What the controller remembers about a running job, kept in the TrainingJob's status (never in memory).

`JobRuntime` is the typed view of the status fields the controller owns; `from_status`/`to_status` convert from and
to the JSON stored in the API server, so an operator restart resumes exactly where the last one stopped.
"""

from __future__ import annotations

import math
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
PHASES = (QUEUED, STARTING, RUNNING, RESCALING, SUCCEEDED, FAILED, SUSPENDED)

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
    attained_s: float = 0.0  # worker-seconds of service banked so far (least-attained-service queue order)
    attained_since: float | None = None  # since when len(placement) workers have been adding to it
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

    def attained(self, now: float) -> float:
        """Worker-seconds of service up to `now`: the banked amount plus what the current placement adds."""
        if self.attained_since is None:
            return self.attained_s
        return self.attained_s + len(self.placement) * max(0.0, now - self.attained_since)

    def with_rescale(self, kind: str, now: float) -> JobRuntime:
        counts = dict(self.rescales)
        counts[kind] = counts.get(kind, 0) + 1
        return replace(self, rescales=counts, last_rescale_time=now)


MAX_COUNT = 2**53
"""Counters and slot numbers above this are not ours (JSON readers lose precision; the API server caps at int64)."""
MAX_TS = 253402300799.0
"""9999-12-31T23:59:59Z: later (or negative) times cannot be written back as RFC 3339."""


def _ts(value: Any) -> float | None:
    """A time from status: RFC 3339 text or seconds; None when absent or not a time (never raises)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        from datetime import datetime

        try:
            ts = datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError):
            return None
    else:
        return None
    return ts if 0.0 <= ts <= MAX_TS else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= MAX_COUNT else None


def _count(value: Any, default: int = 0) -> int:
    """A non-negative integer from status, else `default` (a float, text or negative number is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        return default
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _slots(items: Any) -> list[Mapping[str, Any]]:
    """The entries of a slot list that are objects with a valid slot number, first of each number only."""
    seen: set[int] = set()
    out = []
    for item in _items(items):
        slot = _count(item.get("slot"), -1) if isinstance(item, Mapping) else -1
        if slot >= 0 and slot not in seen:
            seen.add(slot)
            out.append(item)
    return out


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_status(status: Mapping[str, Any] | None) -> JobRuntime:
    """Read the controller's part of a TrainingJob status (missing fields take their defaults).

    Never raises: status comes back from the API server and may have been written by an older operator or a second
    writer. A field that does not parse takes its default (an entry of a list is dropped), so the next status write
    repairs it; `api.validation.trainingjob_status_issues` names such fields for the Warning event."""
    s = _map(status)
    ctl = _map(s.get("controller"))
    phase = s.get("phase")
    return JobRuntime(
        phase=phase if phase in PHASES else QUEUED,
        rescale_generation=_count(s.get("rescaleGeneration")),
        placement=tuple(
            Slot(p["slot"], p["node"], p.get("seen") is True)
            for p in _slots(ctl.get("placement"))
            if isinstance(p.get("node"), str)
        ),
        members=tuple(dict.fromkeys(m for m in _items(ctl.get("members")) if _count(m, -1) >= 0)),
        leaving=tuple(Leaving(x["slot"], _ts(x.get("since")) or 0.0) for x in _slots(ctl.get("leaving"))),
        next_slot=_count(ctl.get("nextSlot")),
        rendezvous_pod=_text(ctl.get("rendezvousPod")),
        rendezvous_seen=ctl.get("rendezvousSeen") is True,
        rendezvous_count=_count(ctl.get("rendezvousCount")),
        restarts={k: _count(v) for k, v in _map(s.get("restarts")).items() if k in RESTART_CAUSES and _count(v)},
        rescales={k: _count(v) for k, v in _map(s.get("rescales")).items() if k in RESCALE_KINDS and _count(v)},
        recent_failures=tuple(t for t in map(_ts, _items(ctl.get("recentFailures"))) if t is not None),
        start_time=_ts(s.get("startTime")),
        completion_time=_ts(s.get("completionTime")),
        last_rescale_time=_ts(s.get("lastRescaleTime")),
        generation_started=_ts(ctl.get("generationStarted")),
        attained_s=_float(ctl.get("attainedWorkerSeconds")) or 0.0,
        attained_since=_ts(ctl.get("attainedSince")),
        last_rescale_pause_s=_float(s.get("lastRescalePauseSeconds")),
        message=_text(s.get("message")),
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
            "attainedWorkerSeconds": round(rt.attained_s, 1),
            "attainedSince": iso(rt.attained_since),
        },
    }
