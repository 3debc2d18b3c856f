"""The status this operator last wrote, per TrainingJob, to continue from when the watched one is older.

Two ways the watched status can be behind what the operator already decided:

* the watch lags behind our own status patch (the event has not arrived yet);
* another writer put back an older status (a lagging replica, a manual `kubectl edit --subresource=status`):
  the bookkeeping shows a lower rescale generation than we wrote, or a job we finished as running again.
  Continuing from it would open a generation number again (a reused generation reuses a rendezvous id,
  `<uid>-g<generation>`, with other members), or hold capacity for a finished job that another job now uses.

In both cases the controller continues from the status it wrote; after a rollback it writes it again. Only the
operator moves `rescaleGeneration`, and only up, and a finished job never runs again, so a lower generation or a
finished job unfinished for the same job uid is never news. Memory holds
one status per live job; a restarted operator starts empty (the API server's copy is all it has then).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from elastic_operator.k8s.view import Key

log = logging.getLogger("elastic_operator.written")

JSON = dict[str, Any]


TERMINAL = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class _Written:
    uid: str
    resource_version: int
    generation: int
    status: JSON

    def newer_than(self, status: Any) -> bool:
        """Our status is ahead of `status`: a higher generation, or finished where `status` is not."""
        phase = status.get("phase") if isinstance(status, dict) else None
        return _generation(status) < self.generation or (self.status.get("phase") in TERMINAL and phase not in TERMINAL)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _generation(status: Any) -> int:
    return _int(status.get("rescaleGeneration")) if isinstance(status, dict) else 0


@dataclass
class WrittenStatus:
    _by_job: dict[Key, _Written] = field(default_factory=dict)
    rollbacks: int = 0  # how often another writer was caught putting back an older status

    def remember(self, key: Key, stored: JSON) -> None:
        """Record the object a status patch returned (as stored by the API server)."""
        meta, status = stored.get("metadata") or {}, stored.get("status")
        if not meta.get("uid") or not isinstance(status, dict):
            return
        self._by_job[key] = _Written(str(meta["uid"]), _int(meta.get("resourceVersion")), _generation(status), status)

    def fresh(self, key: Key, obj: JSON, *, quiet: bool = False) -> tuple[JSON, bool]:
        """(the object to continue from, whether another writer rolled our status back and it must be rewritten).
        `quiet`: a lookup (the report endpoint's), not a planning round: no log line, not counted."""
        written = self._by_job.get(key)
        meta = obj.get("metadata") or {}
        if written is None or written.uid != str(meta.get("uid")):
            return obj, False
        if _int(meta.get("resourceVersion")) < written.resource_version:
            return {**obj, "status": written.status}, False  # the watch has not caught up with our write
        if written.newer_than(obj.get("status")):
            if quiet:
                return {**obj, "status": written.status}, True
            self.rollbacks += 1
            log.warning("%s/%s: another writer put back an older status (generation %d, %s; ours: %d, %s); restoring",
                        *key, _generation(obj.get("status")), (obj.get("status") or {}).get("phase"),
                        written.generation, written.status.get("phase"))  # fmt: skip
            return {**obj, "status": written.status}, True
        return obj, False

    def forget(self, live: set[Key]) -> None:
        for key in set(self._by_job) - live:
            del self._by_job[key]
