"""The controller continues from the status it wrote when the watched one is older: the watch lags behind its own
patch, or another writer put back an older status (found by `make chaos`: a lagging writer's copy took a job from
generation 5 back to 4, and the report endpoint told running pods to run generation 4 again — a reused generation
reuses a rendezvous id with other members)."""

from __future__ import annotations

import asyncio
from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.controller import Controller
from elastic_operator.k8s.view import ClusterView
from elastic_operator.k8s.written import WrittenStatus
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import ReportStore
from tests.support.recording_client import StoringClient

JSON = dict[str, Any]
NOW = 1_800_000_000.0
KEY = ("ns", "j")


def job(rv: int, generation: int, uid: str = "u1", **status: Any) -> JSON:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": uid, "generation": 1, "resourceVersion": str(rv)},
        "spec": {"minWorkers": 1, "maxWorkers": 1, "template": {"image": "img", "command": ["train"]}},
        "status": {"phase": "Queued", "rescaleGeneration": generation, **status},
    }


def test_the_watch_lagging_behind_our_write_continues_from_our_write() -> None:
    written = WrittenStatus()
    written.remember(KEY, job(10, 5))
    obj, rolled_back = written.fresh(KEY, job(9, 4))
    assert obj["status"]["rescaleGeneration"] == 5 and not rolled_back


def test_an_older_status_put_back_by_another_writer_is_caught() -> None:
    written = WrittenStatus()
    written.remember(KEY, job(10, 5))
    obj, rolled_back = written.fresh(KEY, job(12, 4))
    assert obj["status"]["rescaleGeneration"] == 5 and rolled_back
    assert written.rollbacks == 1
    _, quiet = written.fresh(KEY, job(12, 4), quiet=True)
    assert quiet and written.rollbacks == 1


def test_a_finished_job_put_back_as_running_is_caught() -> None:
    written = WrittenStatus()
    written.remember(KEY, job(10, 5, phase="Succeeded"))
    obj, rolled_back = written.fresh(KEY, job(12, 5, phase="Running"))
    assert obj["status"]["phase"] == "Succeeded" and rolled_back
    assert written.fresh(KEY, job(13, 5, phase="Succeeded")) == (job(13, 5, phase="Succeeded"), False)


def test_newer_status_and_other_jobs_pass_through() -> None:
    written = WrittenStatus()
    written.remember(KEY, job(10, 5))
    assert written.fresh(KEY, job(12, 6)) == (job(12, 6), False)
    assert written.fresh(KEY, job(12, 1, uid="u2")) == (job(12, 1, uid="u2"), False)  # recreated under that name
    assert written.fresh(("ns", "other"), job(3, 0)) == (job(3, 0), False)
    written.forget(set())
    assert written.fresh(KEY, job(12, 4)) == (job(12, 4), False)


def test_a_rolled_back_status_is_written_again_and_directives_keep_the_generation() -> None:
    view = ClusterView()
    view.observe("TrainingJob", None, job(10, 5))
    client = StoringClient(job(10, 5))
    ctl = Controller(client=client, view=view, settings=OperatorSettings(), metrics=OperatorMetrics(),  # type: ignore[arg-type]
                     reports=ReportStore(), token_key=b"k", report_url="http://op:8080", clock=lambda: NOW)  # fmt: skip
    asyncio.run(ctl.run_round())
    assert client.status_patches, "the first round writes the job's status"
    written_rv = int(client.stored["metadata"]["resourceVersion"])

    view.observe("TrainingJob", "MODIFIED", job(written_rv + 1, 4))  # a lagging writer's copy lands
    assert ctl.directive("ns", "j", "j-w0").generation == 5
    client.status_patches.clear()
    asyncio.run(ctl.run_round())
    assert [p["rescaleGeneration"] for p in client.status_patches] == [5]
