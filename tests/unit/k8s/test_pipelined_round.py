"""Pipelined rounds (k8s/inflight.py): a round returns once pods are created; the status writes that follow go on
while the next round plans. That round leaves a job with writes in flight alone and plans with the status being
written; a write that fails leaves the view's status in force."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from elastic_operator.config import OperatorSettings
from elastic_operator.controller import Controller
from elastic_operator.k8s.inflight import InFlight, merge_patch
from elastic_operator.k8s.view import ClusterView
from tests.unit.fuzz.test_controller_fuzz import StandInApiServer, controller
from tests.unit.k8s.test_pod_slots import GPU, node
from tests.unit.k8s.test_queue_news import waiting_job

JSON = dict[str, Any]
DEADLINE_S = 10.0


class HeldStatus(StandInApiServer):
    """Status patches wait at a gate; `refuse` makes them fail with a 409 once let through."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.refuse = False
        self.waiting: list[str] = []
        self.arrived = asyncio.Event()  # a status patch is waiting at the gate

    async def patch_status(self, kind: str, ns: str, name: str, patch: JSON) -> JSON:
        self.waiting.append(name)
        self.arrived.set()
        await self.gate.wait()
        if self.refuse:
            raise ApiException(status=409, reason="Conflict")
        return await super().patch_status(kind, ns, name, patch)


async def arrival(client: HeldStatus, names: list[str]) -> None:
    """Until exactly these status patches wait at the gate (callers bound it with a deadline)."""
    while client.waiting != names:
        client.arrived.clear()
        await client.arrived.wait()


def setup(client: StandInApiServer) -> tuple[Controller, ClusterView]:
    view = ClusterView()
    view.observe("Node", None, node("n", {GPU: "2", "cpu": "32", "pods": "110"}))  # room for one job of two
    return controller(client, view), view  # default settings; its clock stands at the same instant as T0


def submit(client: StandInApiServer, view: ClusterView, i: int) -> None:
    obj = waiting_job(i)
    client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)
    view.observe("TrainingJob", None, obj)


def test_the_next_round_plans_with_the_status_in_flight_and_leaves_that_job_alone() -> None:
    client = HeldStatus()
    ctl, view = setup(client)
    submit(client, view, 0)

    async def scenario() -> None:
        await asyncio.wait_for(ctl.run_round(pipelined=True), DEADLINE_S)  # returns with the status write held
        assert client.waiting == ["j000"] and client.status_patches == []
        pods_after_first = sorted(client.created)
        assert len([n for n in pods_after_first if n.startswith("j000-w")]) == 2
        planned = ctl.inflight.planned(("ns", "j000"), view.jobs[("ns", "j000")])
        assert planned["status"]["phase"] == "Starting"  # what the next round plans with
        submit(client, view, 1)  # a second job arrives; the node is full with the first
        await asyncio.wait_for(ctl.run_round(pipelined=True), DEADLINE_S)
        assert sorted(client.created) == pods_after_first  # j000 left alone, j001 does not fit
        # j001's Queued status follows in the background (the plan changed nothing for it): the round did not wait
        assert ctl.inflight.busy(("ns", "j001"))
        await asyncio.wait_for(arrival(client, ["j000", "j001"]), DEADLINE_S)
        client.gate.set()
        await asyncio.wait_for(ctl.inflight.settle(), DEADLINE_S)

    asyncio.run(scenario())
    by_job = {name: patch for name, patch in client.status_patches}
    assert [name for name, _ in client.status_patches].count("j000") == 1
    assert by_job["j000"]["phase"] == "Starting"
    assert by_job["j001"]["phase"] == "Queued"
    # planned behind a placed j000, j001 is first in the queue (a queued j000 would have been ahead of it)
    assert by_job["j001"]["lastDecision"]["queuePosition"] == 1
    assert ctl.inflight.planned(("ns", "j000"), view.jobs[("ns", "j000")]) is view.jobs[("ns", "j000")]


def test_a_round_waits_only_for_the_jobs_it_places() -> None:
    """One write slot, held by j000's status write: j001's Queued status (no change of the plan) must wait for it,
    and the round that planned j001 returns without waiting (a round that waited would hold every later admission
    behind writes that move no GPU)."""
    client = HeldStatus()
    ctl, view = setup(client)
    ctl.settings = OperatorSettings(apply_concurrency=1)
    submit(client, view, 0)

    async def scenario() -> None:
        await asyncio.wait_for(ctl.run_round(pipelined=True), DEADLINE_S)
        assert client.waiting == ["j000"]  # j000 admitted; its status write holds the only slot
        submit(client, view, 1)
        await asyncio.wait_for(ctl.run_round(pipelined=True), DEADLINE_S)
        assert ctl.inflight.busy(("ns", "j001")) and client.waiting == ["j000"]  # j001 still waits for the slot
        client.gate.set()
        await asyncio.wait_for(ctl.inflight.settle(), DEADLINE_S)

    asyncio.run(scenario())
    assert [name for name, _ in client.status_patches] == ["j000", "j001"]


def test_a_reconcile_still_waiting_for_a_slot_gives_way_to_the_jobs_admission() -> None:
    """j001's Queued status waits for the only write slot (held by j000's status write). A node comes: the plan
    admits j001 at once, in place of that waiting reconcile, which never writes; left alone, the admission would
    have waited for it to finish and the new node would have stood idle meanwhile."""
    client = HeldStatus()
    ctl, view = setup(client)
    ctl.settings = OperatorSettings(apply_concurrency=1)
    submit(client, view, 0)

    async def scenario() -> None:
        await asyncio.wait_for(ctl.run_round(pipelined=True), DEADLINE_S)  # j000 admitted, its write held
        submit(client, view, 1)
        await asyncio.wait_for(ctl.run_round(pipelined=True), DEADLINE_S)  # j001 queued: its write waits
        assert ctl.inflight.busy(("ns", "j001")) and client.waiting == ["j000"]
        view.observe("Node", None, node("m", {GPU: "2", "cpu": "32", "pods": "110"}))
        third = asyncio.create_task(ctl.run_round(pipelined=True))  # admits j001 (its pods wait for the slot)
        client.gate.set()
        await asyncio.wait_for(third, DEADLINE_S)
        await asyncio.wait_for(ctl.inflight.settle(), DEADLINE_S)

    asyncio.run(scenario())
    patches = [(name, patch["phase"]) for name, patch in client.status_patches]
    assert patches == [("j000", "Starting"), ("j001", "Starting")]  # no Queued write for j001 in between
    assert len([n for n in client.created if n.startswith("j001-w")]) == 2


def test_a_status_write_that_fails_leaves_the_view_in_force() -> None:
    client = HeldStatus()
    client.refuse = True
    client.gate.set()
    ctl, view = setup(client)
    submit(client, view, 0)
    asyncio.run(ctl.run_round(pipelined=False))
    key = ("ns", "j000")
    assert client.waiting == ["j000"] and client.status_patches == []
    assert ctl.inflight.planned(key, view.jobs[key]) is view.jobs[key]  # nothing intended any more
    assert not ctl.inflight.busy(key)
    assert ctl.metrics.registry.get_sample_value("elastic_training_apply_errors_total", {"kind": "api"}) == 1.0


def test_a_round_that_is_not_pipelined_returns_when_every_write_is_done() -> None:
    client = HeldStatus()
    ctl, view = setup(client)
    submit(client, view, 0)

    async def scenario() -> bool:
        round_ = asyncio.create_task(ctl.run_round())
        await asyncio.wait_for(client.arrived.wait(), DEADLINE_S)
        assert client.waiting == ["j000"]
        returned_early = round_.done()
        client.gate.set()
        await asyncio.wait_for(round_, DEADLINE_S)
        return returned_early

    assert asyncio.run(scenario()) is False
    assert [name for name, _ in client.status_patches] == ["j000"]


def test_merge_patch_is_rfc_7386() -> None:
    stored = {"phase": "Queued", "lastDecision": {"action": "wait", "queuePosition": 3}, "message": "x"}
    patch = {"phase": "Starting", "lastDecision": {"action": "admit", "queuePosition": None}, "message": None}
    assert merge_patch(stored, patch) == {"phase": "Starting", "lastDecision": {"action": "admit"}}
    assert stored["lastDecision"] == {"action": "wait", "queuePosition": 3}  # not modified in place
    assert merge_patch(None, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert merge_patch({"a": 1}, [1, 2]) == [1, 2]


def test_a_status_intended_for_an_older_job_of_the_same_name_is_not_used() -> None:
    inflight = InFlight()
    old = {"metadata": {"uid": "a"}, "status": {"phase": "Queued"}}
    inflight.intend(("ns", "j"), old, {"phase": "Starting"})
    assert inflight.planned(("ns", "j"), old)["status"] == {"phase": "Starting"}
    recreated = {"metadata": {"uid": "b"}, "status": {"phase": "Queued"}}
    assert inflight.planned(("ns", "j"), recreated) is recreated
    inflight.landed(("ns", "j"))
    assert inflight.planned(("ns", "j"), old) is old
