"""Queue news (a waiting job's position, the queue depth) is rewritten at most every queue_status_interval_s per
job and at most queue_status_writes_per_s over the whole queue: a long queue refreshes slower instead of flooding
the API server."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.controller import Controller
from elastic_operator.k8s.view import ClusterView
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import ReportStore
from tests.unit.fuzz.test_controller_fuzz import StandInApiServer
from tests.unit.k8s.test_pod_slots import GPU, job, node

T0 = 1_800_000_000.0


def waiting_job(i: int) -> dict[str, Any]:
    obj = job()
    obj["metadata"].update(
        name=f"j{i:03d}", uid=f"uid-{i}", creationTimestamp=f"2027-01-15T08:{i // 60:02d}:{i % 60:02d}Z"
    )
    obj["spec"].update(minWorkers=2, maxWorkers=2)  # two GPUs; the only node has one: everyone waits
    return obj


def writes_per_round(settings: OperatorSettings) -> list[int]:
    """Status writes in three rounds: 40 new jobs at T0; one more job arrives (every position's queue depth
    moves) and a round at T0+5; another at T0+25."""
    client, view = StandInApiServer(), ClusterView()
    view.observe("Node", None, node("n", {GPU: "1", "cpu": "32", "pods": "110"}))
    now = [T0]
    ctl = Controller(
        client=client,  # type: ignore[arg-type]
        view=view,
        settings=settings,
        metrics=OperatorMetrics(),
        reports=ReportStore(),
        token_key=b"k",
        report_url="http://operator:8080",
        clock=lambda: now[0],
    )

    def add(obj: dict[str, Any]) -> None:
        client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)
        view.observe("TrainingJob", None, obj)

    def refresh() -> None:  # the watch delivers what the client stored
        for obj in client.objects.values():
            view.observe("TrainingJob", "MODIFIED", copy.deepcopy(obj))

    counts = []
    for i in range(40):
        add(waiting_job(i))
    for at, arrival in ((T0, None), (T0 + 5, 40), (T0 + 25, None)):
        if arrival is not None:
            add(waiting_job(arrival))
        now[0] = at
        before = len(client.status_patches)
        asyncio.run(ctl.run_round())
        refresh()
        counts.append(len(client.status_patches) - before)
    return counts


def test_a_long_queue_refreshes_positions_slower() -> None:
    fast = writes_per_round(OperatorSettings(queue_status_interval_s=1, queue_status_writes_per_s=1000))
    slow = writes_per_round(OperatorSettings(queue_status_interval_s=1, queue_status_writes_per_s=2))
    assert fast[:2] == [40, 41]  # first statuses; then the newcomer's first and 40 new queue depths
    assert slow[:2] == [40, 1]  # 41 waiting at 2 writes/s: each position at most every 20.5 s
    assert slow[2] == 40  # 20 s later the 40 older jobs' news goes out
