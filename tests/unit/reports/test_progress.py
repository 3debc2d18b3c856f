"""status.progress never shows a checkpoint going back, nor a step below the last checkpoint — found by the chaos
run (bench/chaos): after an operator restart its report store is empty, and when the first report to arrive came
from a pod that had not trained yet (step 0, no checkpoint), the round wrote progress 0 over a job at step 340."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from elastic_operator.config import OperatorSettings
from elastic_operator.controller import Controller
from elastic_operator.k8s.view import ClusterView
from elastic_operator.lifecycle.step import ReportFacts
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.progress import durable_checkpoint
from elastic_operator.reports.server import ReportStore, StoredReport
from elastic_trainer import contract
from tests.support.recording_client import RecordingClient

JSON = dict[str, Any]
NOW = 1_800_000_000.0


def stored(pod: str, step: int, checkpoint: int | None, state: str = "running", generation: int = 3) -> StoredReport:
    report = contract.Report(namespace="ns", job="j", pod=pod, generation=generation, state=state, step=step,
                             last_checkpoint_step=checkpoint)  # fmt: skip
    return StoredReport(ReportFacts(generation, state, NOW, checkpoint), report, NOW)


@pytest.mark.parametrize(
    ("reports", "previous", "expected"),
    [
        ([], None, None),
        ([stored("a", 0, None)], None, None),
        ([stored("a", 0, None)], {"lastCheckpointStep": 300}, 300),
        ([stored("a", 120, 100), stored("b", 0, None)], {"lastCheckpointStep": 50}, 100),
        ([stored("a", 120, 100)], {"lastCheckpointStep": "300"}, 100),  # a stored value of the wrong type: ignored
        ([stored("a", 120, 100)], {"lastCheckpointStep": True}, 100),
        ([stored("a", 120, 100)], {"lastCheckpointStep": -5}, 100),
        ([stored("a", 120, 100)], "not an object", 100),
    ],
)
def test_durable_checkpoint(reports: list[StoredReport], previous: Any, expected: int | None) -> None:
    assert durable_checkpoint(reports, previous) == expected


def running_job() -> JSON:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {"minWorkers": 1, "maxWorkers": 1, "template": {"image": "img", "command": ["train"]}},
        "status": {
            "phase": "Running",
            "rescaleGeneration": 3,
            "progress": {"step": 340, "epoch": 6, "lastCheckpointStep": 300, "metrics": {}, "samplesPerSecond": 1.0},
        },
    }


def test_a_restarted_operator_does_not_write_progress_back_to_zero() -> None:
    view = ClusterView()
    view.observe("TrainingJob", None, running_job())
    reports = ReportStore()
    reports.put(("ns", "j"), "j-w5", stored("j-w5", 0, None, state="starting", generation=0))  # a fresh pod
    client = RecordingClient()
    ctl = Controller(client=client, view=view, settings=OperatorSettings(), metrics=OperatorMetrics(),  # type: ignore[arg-type]
                     reports=reports, token_key=b"k", report_url="http://op:8080", clock=lambda: NOW)  # fmt: skip
    asyncio.run(ctl.run_round())
    progress = [p["progress"] for p in client.status_patches if "progress" in p]
    assert progress, client.status_patches
    assert progress[-1]["lastCheckpointStep"] == 300
    assert progress[-1]["step"] == 300  # resumes from the checkpoint: never shown below it
