"""Fuzz the planning round with bad TrainingJobs (spec and status) next to a good one.

Property: the round finishes without an unexpected error; the good job is reconciled as if the bad one were not
there; a bad spec gets phase Failed and an InvalidSpec condition naming the field, written once (the watch event
of that write, and every later round, write nothing more: no retry storm); every status the operator writes is one
the API server accepts. The client is an in-memory stand-in that checks what the API server would check.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from elastic_operator.api.trainingjob import TrainingJobStatus
from elastic_operator.config import OperatorSettings
from elastic_operator.controller import Controller
from elastic_operator.k8s.client import KubeClient
from elastic_operator.k8s.jobs import parse_job
from elastic_operator.k8s.view import ClusterView
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import ReportStore
from tests.unit.api.strategies import trainingjob_statuses, trainingjobs
from tests.unit.fuzz.bad_json import api_object, json_values, mutations
from tests.unit.fuzz.test_models_fuzz import FUZZ, JOBS, assert_writable

JSON = dict[str, Any]
NOW = 1_800_000_000.0


class StandInApiServer:
    """Records writes; refuses a status patch the real API server would refuse (non-JSON numbers, int64 overflow,
    schema violations), as a 422."""

    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}  # TrainingJobs by name, as stored
        self.status_patches: list[tuple[str, JSON]] = []
        self.events: list[tuple[str, str, str]] = []  # (object name, reason, note)
        self.created: list[str] = []

    path = staticmethod(KubeClient.path)

    async def patch_status(self, kind: str, ns: str, name: str, patch: JSON) -> JSON:
        assert_writable(patch["status"], TrainingJobStatus)
        self.status_patches.append((name, copy.deepcopy(patch["status"])))
        stored = self.objects[name]
        old = stored.get("status")
        stored["status"] = merge(old, patch["status"]) if isinstance(old, dict) else patch["status"]
        return copy.deepcopy(stored)

    async def create(self, obj: JSON) -> JSON | None:
        json.dumps(obj, allow_nan=False)
        self.created.append(obj["metadata"]["name"])
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}}

    async def delete(self, kind: str, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
        return True

    async def post_event(self, event: JSON) -> None:
        self.events.append((event["regarding"]["name"], event["reason"], event["note"]))

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> JSON:
        return {}


def node() -> JSON:
    return {
        "metadata": {"name": "n1", "labels": {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def controller(client: StandInApiServer, view: ClusterView) -> Controller:
    return Controller(
        client=client,  # type: ignore[arg-type]
        view=view,
        settings=OperatorSettings(),
        metrics=OperatorMetrics(),
        reports=ReportStore(),
        token_key=b"k",
        report_url="http://operator:8080",
        clock=lambda: NOW,
    )


def unexpected_errors(ctl: Controller) -> float:
    """Errors of the round's safety net (a bug, not an API answer): the fuzzing asserts it is never needed."""
    registry = ctl.metrics.registry
    return sum(
        registry.get_sample_value("elastic_training_apply_errors_total", {"kind": kind}) or 0.0
        for kind in ("job", "round", "api")
    )


def merge(stored: JSON, patch: JSON) -> JSON:
    out = dict(stored)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


bad_specs = st.sampled_from(JOBS).flatmap(lambda j: mutations({k: v for k, v in j.items() if k != "status"}))
bad_statuses = trainingjobs(with_status=True).flatmap(
    lambda j: st.one_of(trainingjob_statuses(), json_values()).flatmap(
        lambda status: mutations(status).map(lambda s: {**j, "status": s})
    )
)


@settings(FUZZ, max_examples=60)  # a whole planning round per example
@given(st.one_of(bad_specs, bad_statuses))
def test_a_bad_job_never_stops_the_round_and_is_reported_once(raw: Any) -> None:
    asyncio.run(_round_twice(raw))


async def _round_twice(raw: Any) -> None:
    client, view = StandInApiServer(), ClusterView()
    view.observe("Node", None, node())
    good = api_object(copy.deepcopy(JOBS[0]), name="good", uid="uid-good")
    bad = api_object(raw, name="bad", uid="uid-bad")
    for obj in (good, bad):
        client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)
        view.observe("TrainingJob", None, obj)
    ctl = controller(client, view)

    await ctl.run_round()
    assert unexpected_errors(ctl) == 0
    assert any(name == "good" for name, _ in client.status_patches), "the good job must be reconciled"
    errors = parse_job(bad).errors
    written = [s for name, s in client.status_patches if name == "bad"]
    if errors:
        assert len(written) == 1
        invalid = [c for c in written[0]["conditions"] if c["type"] == "InvalidSpec"]
        assert written[0]["phase"] == "Failed" and len(invalid) == 1
        assert errors[0][0] in invalid[0]["message"], (errors, invalid)
        assert [r for n, r, _ in client.events if n == "bad"] == ["InvalidSpec"]

    # the watch brings our own writes back; nothing else changed: the bad job gets nothing more
    for stored in client.objects.values():
        view.observe("TrainingJob", "MODIFIED", copy.deepcopy(stored))
    before = (
        len([n for n, _ in client.status_patches if n == "bad"]),
        len([e for e in client.events if e[0] == "bad"]),
    )
    await ctl.run_round()
    after = (len([n for n, _ in client.status_patches if n == "bad"]), len([e for e in client.events if e[0] == "bad"]))
    assert unexpected_errors(ctl) == 0
    if errors:
        assert after == before, "an invalid job is reported once, not every round"


def test_regression_corrupted_status_is_said_once_and_repaired() -> None:
    """A status the schema does not allow (an older operator, a second writer) made from_status raise: every round
    failed for every job. Now it reads as defaults, one Warning event names the fields, and the next write repairs
    them."""

    async def scenario() -> None:
        client, view = StandInApiServer(), ClusterView()
        view.observe("Node", None, node())
        job = api_object(copy.deepcopy(JOBS[0]), name="bad", uid="uid-bad")
        job["status"] = {"phase": "Running", "controller": {"placement": [{"slot": "zero", "node": "n1"}]}}
        client.objects["bad"] = copy.deepcopy(job)
        view.observe("TrainingJob", None, job)
        ctl = controller(client, view)
        await ctl.run_round()
        await ctl.run_round()
        assert unexpected_errors(ctl) == 0
        warnings = [note for name, reason, note in client.events if reason == "InvalidStatus"]
        assert len(warnings) == 1 and "status.controller.placement[0].slot" in warnings[0]
        assert client.status_patches[0][1]["controller"]["placement"] != [{"slot": "zero", "node": "n1"}]

    asyncio.run(scenario())
