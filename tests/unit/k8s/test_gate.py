"""The priority gate (k8s/gate.py): placement writes are served before the writes that follow and the events,
waiters age, and cancelled waiters neither hold nor lose a slot."""

from __future__ import annotations

import asyncio

import pytest

from elastic_operator.k8s.gate import EXPLAIN, FOLLOW, PLACE, PriorityGate

DEADLINE_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let every ready task run (each step of the scenarios below is a handful of hops)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def order_served(gate: PriorityGate, arrivals: list[tuple[str, int]], clock: Clock | None = None) -> list[str]:
    """Hold the gate's only slot, queue `arrivals` (name, priority) in order, then release and record who got it."""
    served: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(PLACE):
            await release.wait()

    async def waiter(name: str, priority: int) -> None:
        async with gate.slot(priority):
            served.append(name)

    first = asyncio.create_task(holder())
    await settle()
    tasks = []
    for name, priority in arrivals:
        tasks.append(asyncio.create_task(waiter(name, priority)))
        await settle()
        if clock is not None:
            clock.now += 1.0
    assert served == [] and gate.waiting == len(arrivals)
    release.set()
    await asyncio.wait_for(asyncio.gather(first, *tasks), DEADLINE_S)
    return served


def test_waiters_are_served_by_priority_then_arrival() -> None:
    gate = PriorityGate(1, aging_s=1000.0)
    arrivals = [("event", EXPLAIN), ("done-1", FOLLOW), ("admit-1", PLACE), ("done-2", FOLLOW), ("admit-2", PLACE)]
    served = asyncio.run(order_served(gate, arrivals))
    assert served == ["admit-1", "admit-2", "done-1", "done-2", "event"]


def test_a_waiter_that_waited_long_enough_goes_before_newer_admissions() -> None:
    clock = Clock()
    gate = PriorityGate(1, aging_s=2.0, clock=clock)
    # one second between arrivals; at release (t=4) "done" has waited 4 s = two levels: it ranks as PLACE and
    # arrived first; "event" has waited 3 s: one level, FOLLOW, still behind both admissions
    arrivals = [("done", FOLLOW), ("event", EXPLAIN), ("admit-1", PLACE), ("admit-2", PLACE)]
    served = asyncio.run(order_served(gate, arrivals, clock))
    assert served == ["done", "admit-1", "admit-2", "event"]


def test_no_waiting_while_slots_are_free_and_never_more_holders_than_slots() -> None:
    gate = PriorityGate(3)
    holding = 0
    most = 0

    async def work(i: int) -> None:
        nonlocal holding, most
        async with gate.slot(i % 3):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0)
            holding -= 1

    async def scenario() -> None:
        await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(50))), DEADLINE_S)

    asyncio.run(scenario())
    assert most == 3 and gate.waiting == 0


def test_a_cancelled_waiter_gives_its_place_up_and_a_slot_is_never_lost() -> None:
    gate = PriorityGate(1)
    served: list[str] = []

    async def scenario() -> None:
        release = asyncio.Event()

        async def holder() -> None:
            async with gate.slot():
                await release.wait()

        async def waiter(name: str) -> None:
            async with gate.slot(FOLLOW):
                served.append(name)

        first = asyncio.create_task(holder())
        await settle()
        doomed = asyncio.create_task(waiter("doomed"))
        kept = asyncio.create_task(waiter("kept"))
        await settle()
        doomed.cancel()
        release.set()
        await asyncio.wait_for(asyncio.gather(first, kept), DEADLINE_S)
        with pytest.raises(asyncio.CancelledError):
            await doomed
        # handed the slot and cancelled before it ran: the slot passes on instead of being lost
        blocker = asyncio.create_task(holder())
        release.clear()
        await settle()
        late = asyncio.create_task(waiter("late"))
        after = asyncio.create_task(waiter("after"))
        await settle()
        release.set()
        await asyncio.sleep(0)  # the holder leaves and hands the slot to "late"...
        late.cancel()  # ...which is cancelled before it runs
        await asyncio.wait_for(asyncio.gather(blocker, after), DEADLINE_S)
        async with asyncio.timeout(DEADLINE_S), gate.slot():  # the gate's one slot is free again
            served.append("end")

    asyncio.run(scenario())
    assert served == ["kept", "after", "end"]


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="slots"):
        PriorityGate(0)
