"""How an admission's writes are ordered and what a round waits for.

- The worker pods (they hold the GPUs) go out together with the token Secret they mount, one round trip after the
  plan; the rendezvous pod only after the NetworkPolicy that protects it is stored.
- Events are posted off the round's path: a round (and so the next one) does not wait for them, they all arrive
  afterwards, and a backlog beyond EVENT_BACKLOG is dropped and counted, not held in memory.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from elastic_operator import controller as controller_module
from elastic_operator.controller import Controller
from elastic_operator.k8s.view import ClusterView
from tests.unit.fuzz.test_controller_fuzz import StandInApiServer, controller
from tests.unit.k8s.test_pod_slots import GPU, node
from tests.unit.k8s.test_queue_news import waiting_job

JSON = dict[str, Any]
DEADLINE_S = 10.0  # generous: each wait below ends as soon as its condition holds


def cluster(client: StandInApiServer, jobs: int) -> tuple[Controller, ClusterView]:
    view = ClusterView()
    view.observe("Node", None, node("n", {GPU: "8", "cpu": "32", "pods": "110"}))
    for i in range(jobs):  # jobs of two one-GPU workers: all fit
        obj = waiting_job(i)
        client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)
        view.observe("TrainingJob", None, obj)
    return controller(client, view), view  # default settings; its clock stands at the same instant as T0


class OrderRecorder(StandInApiServer):
    """Records when each create starts and ends. The Secret's create is held until a worker pod's create has
    started: a controller that waited for the Secret before creating workers would never get there."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, str]] = []  # (start|end, kind, name)
        self.worker_started = asyncio.Event()

    async def create(self, obj: JSON) -> JSON | None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        self.log.append(("start", kind, name))
        if kind == "Pod" and name.endswith("-w0"):
            self.worker_started.set()
        if kind == "Secret":
            await asyncio.wait_for(self.worker_started.wait(), DEADLINE_S)
        await asyncio.sleep(0)  # a real round trip yields to the other creates
        stored = await super().create(obj)
        self.log.append(("end", kind, name))
        return stored


def test_worker_pods_go_out_with_the_secret_and_the_rendezvous_pod_after_its_network_policy() -> None:
    client = OrderRecorder()
    ctl, _ = cluster(client, jobs=1)
    asyncio.run(ctl.run_round())
    assert ctl.metrics.registry.get_sample_value("elastic_training_apply_errors_total", {"kind": "api"}) is None
    log = client.log
    kinds = {kind for _, kind, _ in log}
    assert kinds == {"Secret", "NetworkPolicy", "Pod"}
    secret_end = log.index(("end", "Secret", next(n for _, k, n in log if k == "Secret")))
    worker_starts = [i for i, (ev, kind, name) in enumerate(log) if ev == "start" and kind == "Pod" and "-w" in name]
    assert len(worker_starts) == 2 and all(i < secret_end for i in worker_starts)
    policy_end = next(i for i, (ev, kind, _) in enumerate(log) if ev == "end" and kind == "NetworkPolicy")
    rendezvous_start = next(
        i for i, (ev, kind, name) in enumerate(log) if ev == "start" and kind == "Pod" and "-w" not in name
    )
    assert policy_end < rendezvous_start
    starting = [patch for name, patch in client.status_patches if patch.get("phase") == "Starting"]
    assert len(starting) == 1  # the status follows the creates


class HeldEvents(StandInApiServer):
    """post_event waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def post_event(self, event: JSON) -> None:
        await self.gate.wait()
        await super().post_event(event)


def test_a_round_does_not_wait_for_its_events_and_they_all_arrive_afterwards() -> None:
    client = HeldEvents()
    ctl, _ = cluster(client, jobs=3)

    async def scenario() -> None:
        await asyncio.wait_for(ctl.run_round(), DEADLINE_S)  # would never return if it awaited the held events
        assert sorted(n for n, p in client.status_patches if p.get("phase") == "Starting") == ["j000", "j001", "j002"]
        assert client.events == []
        client.gate.set()
        await asyncio.wait_for(ctl.drain_events(), DEADLINE_S)

    asyncio.run(scenario())
    admitted = sorted(name for name, reason, _ in client.events if reason == "Admitted")
    assert admitted == ["j000", "j001", "j002"]


def test_an_event_backlog_beyond_its_bound_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller_module, "EVENT_BACKLOG", 2)
    client = HeldEvents()
    ctl, _ = cluster(client, jobs=3)

    async def scenario() -> int:
        await asyncio.wait_for(ctl.run_round(), DEADLINE_S)
        handed_over = len(ctl._events_due) + ctl._event_backlog
        client.gate.set()
        await asyncio.wait_for(ctl.drain_events(), DEADLINE_S)
        return handed_over

    assert asyncio.run(scenario()) == 2
    assert len(client.events) == 2
    dropped = ctl.metrics.registry.get_sample_value("elastic_training_apply_errors_total", {"kind": "event"})
    assert dropped is not None and dropped >= 1
