"""Jobs whose writes from an earlier planning round are still in flight.

A round waits only until every job's pods are created (and deleted): the status writes that follow take one more
API round trip, and on a busy API server the next round would otherwise wait for it while capacity freed meanwhile
sits idle (bench/scale: capacity freed -> pods created). Meanwhile:

* the next round leaves a job with writes in flight alone (one writer per job at a time: its writes stay ordered);
* it plans with the status being written (`intended`), not the older one the view still holds: a job whose
  admission is being written must count as placed, or the plan would see its new pods as strays and the job as
  still queued, and make room for it a second time (by shrinking another job);
* a write that fails leaves the view's status in force: the next round plans from what the API server holds, as
  after an operator crash between creating pods and writing the status.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from elastic_operator.k8s.view import Key

JSON = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what a `application/merge-patch+json` status patch does to the stored object)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass
class InFlight:
    _tasks: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    _intended: dict[Key, tuple[str, JSON]] = field(default_factory=dict)  # job -> (uid, status being written)

    def busy(self, key: Key) -> bool:
        return key in self._tasks

    def start(self, key: Key, task: asyncio.Task[None]) -> None:
        self._tasks[key] = task

        def finished(_: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is task:
                del self._tasks[key]
                self._intended.pop(key, None)

        task.add_done_callback(finished)

    def intend(self, key: Key, obj: JSON, status_patch: JSON) -> None:
        """The status `status_patch` will leave on `obj` once written (until the write returns)."""
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        self._intended[key] = (uid, merge_patch(obj.get("status"), status_patch))

    def landed(self, key: Key) -> None:
        """The write returned (stored, or refused): the view and the written status take over."""
        self._intended.pop(key, None)

    def planned(self, key: Key, obj: JSON) -> JSON:
        """`obj` with the status being written for it, if any (the same job: same uid)."""
        found = self._intended.get(key)
        if found is None or found[0] != str((obj.get("metadata") or {}).get("uid", "")):
            return obj
        return {**obj, "status": found[1]}

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    async def settle(self) -> None:
        """Wait until nothing is in flight."""
        while self._tasks:
            await asyncio.gather(*self.tasks(), return_exceptions=True)
