"""Admissions a round has not started within apply_budget_s are left to the next round, which plans them again;
nothing else of the round is skipped and nothing is lost."""

from __future__ import annotations

import asyncio
import copy

from elastic_operator.config import OperatorSettings
from elastic_operator.controller import Controller
from elastic_operator.k8s.view import ClusterView
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import ReportStore
from tests.unit.fuzz.test_controller_fuzz import StandInApiServer
from tests.unit.k8s.test_pod_slots import GPU, node
from tests.unit.k8s.test_queue_news import T0, waiting_job


def test_admissions_past_the_budget_wait_for_the_next_round() -> None:
    client, view = StandInApiServer(), ClusterView()
    view.observe("Node", None, node("n", {GPU: "8", "cpu": "32", "pods": "110"}))
    for i in range(3):  # three jobs of two workers: all fit
        obj = waiting_job(i)
        client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)
        view.observe("TrainingJob", None, obj)
    ctl = Controller(
        client=client,  # type: ignore[arg-type]
        view=view,
        settings=OperatorSettings(apply_budget_s=1e-9),  # spent before the first job's turn
        metrics=OperatorMetrics(),
        reports=ReportStore(),
        token_key=b"k",
        report_url="http://operator:8080",
        clock=lambda: T0,
    )
    view.changed.clear()
    asyncio.run(ctl.run_round())
    assert client.created == [] and client.status_patches == []
    assert view.changed.is_set()  # the next round comes at once
    ctl.settings = OperatorSettings()
    asyncio.run(ctl.run_round())
    assert sorted(name for name, patch in client.status_patches if patch.get("phase") == "Starting") == [
        "j000",
        "j001",
        "j002",
    ]
    assert len([n for n in client.created if n.endswith(("-w0", "-w1"))]) == 6
