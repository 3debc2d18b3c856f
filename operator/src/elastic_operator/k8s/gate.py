"""A concurrency limit whose waiters are served by priority: the writes that place workers go first.

Every round's API writes share apply_concurrency slots. On a busy API server the slots are full and writes wait for
one; a plain semaphore then served them first come, first served, so an admission into freed capacity waited behind
the status writes of jobs that had just finished and behind the events explaining them. None of those moves a GPU:
a job whose workers all finished is planned as free capacity before its status says Succeeded (k8s/snapshot.py).
bench/scale's wave (a thousand jobs finishing within half a minute while a thousand wait) is exactly that mix.

Waiters are served by (priority, arrival): PLACE (admissions, grows, shrinks, requeues), then FOLLOW (everything
else a job's reconcile writes: Running, Succeeded, cleanup), then EXPLAIN (events). A waiter's priority improves by
one level every `aging_s` it waits, so a steady stream of admissions delays the rest by at most that much per level,
never forever.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

PLACE = 0
FOLLOW = 1
EXPLAIN = 2

AGING_S = 5.0


@dataclass(eq=False)
class _Waiter:
    priority: int
    since: float
    seq: int
    future: asyncio.Future[None]


@dataclass
class PriorityGate:
    """At most `slots` holders; `slot(priority)` waits for one. A FIFO per priority level: within a level the head
    has waited longest, so choosing among the heads is enough (aging keeps each level's order)."""

    slots: int
    aging_s: float = AGING_S
    clock: Callable[[], float] = time.monotonic
    _free: int = field(init=False)
    _queues: dict[int, collections.deque[_Waiter]] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError("slots must be at least 1")
        self._free = self.slots

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @contextlib.asynccontextmanager
    async def slot(self, priority: int = PLACE) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        w = _Waiter(priority, self.clock(), next(self._seq), asyncio.get_running_loop().create_future())
        self._queues.setdefault(priority, collections.deque()).append(w)
        try:
            await w.future
        except BaseException:
            queue = self._queues.get(priority)
            if queue is not None and w in queue:
                queue.remove(w)
            elif w.future.done() and not w.future.cancelled():
                self._release()  # handed a slot just as it was cancelled: pass it on
            raise

    def _next(self) -> _Waiter | None:
        now = self.clock()
        best: tuple[int, int] | None = None
        chosen: collections.deque[_Waiter] | None = None
        for queue in self._queues.values():
            if queue:
                head = queue[0]
                rank = (max(0, head.priority - int((now - head.since) / self.aging_s)), head.seq)
                if best is None or rank < best:
                    best, chosen = rank, queue
        return chosen.popleft() if chosen is not None else None

    def _release(self) -> None:
        while (w := self._next()) is not None:
            if not w.future.done():
                w.future.set_result(None)
                return  # the slot passes straight to the waiter
        self._free += 1
