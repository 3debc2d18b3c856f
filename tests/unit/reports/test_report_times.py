"""The report server remembers since when each pod is in its (generation, state), not when it last spoke: the
rescale pause is measured from that first `running` report, however often the launcher reports afterwards."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import ReportStore, build_app
from elastic_operator.reports.tokens import job_token
from elastic_trainer import contract

KEY = b"k"
UID = "uid-1"


def _directive(ns: str, name: str, pod: str) -> contract.Directive:
    return contract.Directive(generation=1, action="run", nnodes=1, rdzv_id=f"{UID}-g1", rdzv_endpoint="x:1")


async def _post_reports(clock_values: list[float], states: list[tuple[int, str]]) -> list[float]:
    store, ticks = ReportStore(), iter(clock_values)
    app = build_app(
        store, KEY, lambda ns, n: UID, _directive, OperatorMetrics(), lambda: None, clock=lambda: next(ticks)
    )
    seen = []
    async with TestClient(TestServer(app)) as client:
        for generation, state in states:
            body = {"namespace": "ns", "job": "j", "pod": "j-w0", "generation": generation, "state": state}
            resp = await client.post(
                "/v1/namespaces/ns/trainingjobs/j/reports",
                json=body,
                headers={"Authorization": f"Bearer {job_token(KEY, UID)}"},
            )
            assert resp.status == 200, await resp.text()
            seen.append(store.facts(("ns", "j"))["j-w0"].time)
    return seen


def test_report_time_is_when_the_pod_entered_its_state() -> None:
    times = asyncio.run(
        _post_reports(
            [10.0, 11.0, 12.0, 13.0, 14.0],
            [(1, "running"), (1, "running"), (2, "waiting"), (2, "running"), (2, "running")],
        )
    )
    assert times == [10.0, 10.0, 12.0, 13.0, 13.0]
