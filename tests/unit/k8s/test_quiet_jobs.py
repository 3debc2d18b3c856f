"""A round leaves alone a job none of whose inputs moved since its last reconcile (which left nothing for later),
for 1-2x IDLE_RECONCILE_S (fixed per job); any new input (its object, a pod, a report, the node set, a plan change,
another kind of queue news), a deferred write or the timer brings it back. A node's other news is the plan's."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.controller import IDLE_RECONCILE_S, Controller, idle_reconcile_s
from elastic_operator.k8s.jobs import parse_job
from elastic_operator.k8s.view import ClusterView
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import ReportStore, StoredReport
from tests.unit.fuzz.test_controller_fuzz import StandInApiServer
from tests.unit.k8s.test_pod_slots import GPU, node
from tests.unit.k8s.test_queue_news import T0, waiting_job

JSON = dict[str, Any]


class Counting(Controller):
    """Counts the jobs each round reconciles."""

    reconciled: list[str]

    async def _reconcile(self, key: Any, *args: Any, **kwargs: Any) -> bool:
        self.reconciled.append(key[1])
        return await super()._reconcile(key, *args, **kwargs)


def setup(jobs: int, settings: OperatorSettings | None = None) -> tuple[Counting, ClusterView, list[float]]:
    client, view = StandInApiServer(), ClusterView()
    view.observe("Node", None, node("n", {GPU: "8", "cpu": "32", "pods": "110"}))
    view.observe("Node", None, node("spare", {GPU: "8", "cpu": "32", "pods": "110"}))
    for i in range(jobs):
        obj = waiting_job(i)
        client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)
        view.observe("TrainingJob", None, obj)
    now = [T0]
    ctl = Counting(
        client=client,  # type: ignore[arg-type]
        view=view,
        settings=settings or OperatorSettings(),
        metrics=OperatorMetrics(),
        reports=ReportStore(),
        token_key=b"k",
        report_url="http://operator:8080",
        clock=lambda: now[0],
    )
    ctl.reconciled = []
    return ctl, view, now


def round_(ctl: Counting, now: list[float], step_s: float = 1.0) -> list[str]:
    now[0] += step_s
    ctl.reconciled = []
    asyncio.run(ctl.run_round())
    return sorted(ctl.reconciled)


def settle(ctl: Counting, now: list[float]) -> None:
    """Rounds until one reconciles nothing (the admission, its own status write coming back, ...)."""
    for _ in range(10):
        if not round_(ctl, now):
            return
    raise AssertionError("the job never settled")


def test_a_quiet_job_is_left_alone_until_an_input_moves_or_its_timer_is_due() -> None:
    ctl, view, now = setup(jobs=1)
    assert round_(ctl, now) == ["j000"]  # admitted: pods created, status written
    settle(ctl, now)
    assert round_(ctl, now) == []
    timer = idle_reconcile_s(("ns", "j000"))
    assert IDLE_RECONCILE_S <= timer <= 2 * IDLE_RECONCILE_S
    assert round_(ctl, now, step_s=timer - 2.0) == []
    assert round_(ctl, now, step_s=2.0) == ["j000"]  # the timer
    assert round_(ctl, now) == []
    pod = copy.deepcopy(next(p for p in view.pods.values() if p["metadata"]["name"].endswith("-w0")))
    pod["metadata"]["resourceVersion"] = "99"
    pod["spec"]["nodeName"] = "n"
    view.observe("Pod", "MODIFIED", pod)
    assert round_(ctl, now) == ["j000"]  # a pod moved
    settle(ctl, now)
    spare = copy.deepcopy(view.nodes["spare"])
    spare["metadata"]["labels"] = {"zone": "b"}
    spare["metadata"]["resourceVersion"] = "7"
    view.observe("Node", "MODIFIED", spare)
    assert round_(ctl, now) == []  # a node's news is the plan's business: no change for this job
    view.observe("Node", "DELETED", view.nodes["spare"])
    assert round_(ctl, now) == ["j000"]  # the node set moved (a node gone fails the pods on it)
    settle(ctl, now)
    key = ("ns", "j000")
    before = ctl._inputs(key, parse_job(view.jobs[key]), view.pods_by_job().get(key, []))
    ctl.reports.by_job[key] = {"j000-w0": StoredReport(facts=None, report=None, received=now[0])}  # type: ignore[arg-type]
    after = ctl._inputs(key, parse_job(view.jobs[key]), view.pods_by_job().get(key, []))
    assert before != after  # a report is an input


def test_a_deferred_informational_write_is_not_left_alone() -> None:
    ctl, _, now = setup(jobs=0, settings=OperatorSettings(informational_writes_per_round=1))
    client = ctl.client
    view = ctl.view
    view.observe("Node", "DELETED", view.nodes["n"])
    view.observe("Node", "DELETED", view.nodes["spare"])  # no capacity: every job waits
    for i in range(3):
        obj = waiting_job(i)
        client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)  # type: ignore[attr-defined]
        view.observe("TrainingJob", None, obj)
    written: list[str] = []
    for _ in range(3):
        round_(ctl, now)
        written = [n for n, p in client.status_patches if p.get("phase") == "Queued"]  # type: ignore[attr-defined]
    assert sorted(written) == ["j000", "j001", "j002"]  # one first status per round, none left behind


def test_a_queued_job_waits_for_its_queue_news_to_be_due_unless_an_input_moves() -> None:
    ctl, view, now = setup(jobs=2)
    node_n = copy.deepcopy(view.nodes["n"])
    node_n["status"]["allocatable"][GPU] = "2"  # room for one of the two jobs
    node_n["metadata"]["resourceVersion"] = "2"
    view.observe("Node", "MODIFIED", node_n)
    view.observe("Node", "DELETED", view.nodes["spare"])
    round_(ctl, now)
    settle(ctl, now)
    assert view.jobs[("ns", "j001")]["status"]["phase"] == "Queued"
    assert round_(ctl, now) == []  # its queue news is not due (queue_status_interval_s)
    view.observe("Node", "ADDED", node("spare", {GPU: "8", "cpu": "32", "pods": "110"}))
    assert "j001" in round_(ctl, now)  # capacity came: admitted at once
