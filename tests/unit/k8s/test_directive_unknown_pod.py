"""The report endpoint never tells a pod it has not seen to exit: after a watch relist (an API server restart) a
live member's report can arrive before its pod is back in the view; told `exit`, its launcher checkpoints and
ends with exit code 0, and a job whose members all ended 0 reads as completed (found by `make chaos`: a sweep
trial marked Succeeded before its training reached its target). A pod the operator knows and does not place
still gets `exit`."""

from __future__ import annotations

from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.controller import Controller
from elastic_operator.k8s.view import ClusterView
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import ReportStore

JSON = dict[str, Any]


def running_job() -> JSON:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "7"},
        "spec": {"minWorkers": 1, "maxWorkers": 2, "template": {"image": "img", "command": ["train"]}},
        "status": {
            "phase": "Running",
            "rescaleGeneration": 4,
            "controller": {"placement": [{"slot": 0, "node": "n1", "seen": True}], "members": [0], "nextSlot": 10},
        },
    }


def worker(slot: int) -> JSON:
    labels = {"elastic.training/job-name": "j", "elastic.training/role": "worker", "elastic.training/slot": str(slot)}
    return {
        "metadata": {"name": f"j-w{slot}", "namespace": "ns", "labels": labels},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.0.0.2"},
    }


def controller() -> Controller:
    view = ClusterView()
    view.observe("TrainingJob", None, running_job())
    view.observe("Pod", None, worker(0))
    view.observe("Pod", None, worker(9))  # a pod of a slot the job no longer places
    return Controller(client=None, view=view, settings=OperatorSettings(), metrics=OperatorMetrics(),  # type: ignore[arg-type]
                      reports=ReportStore(), token_key=b"k", report_url="http://op:8080")  # fmt: skip


def test_a_pod_not_in_the_view_waits_instead_of_exiting() -> None:
    d = controller().directive("ns", "j", "j-w1")
    assert (d.action, d.generation) == ("checkpoint-and-wait", 4)


def test_known_pods_get_their_directive() -> None:
    ctl = controller()
    assert ctl.directive("ns", "j", "j-w9").action == "exit"
    assert ctl.directive("ns", "j", "j-w0").action in ("run", "checkpoint-and-wait")  # run once rendezvous is up
