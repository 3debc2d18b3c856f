"""The view keeps a slim copy of each pod: everything the operator reads of a pod reads the same from it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from elastic_operator.k8s.facts import pod_facts, pod_holds_resources, pod_requests
from elastic_operator.k8s.view import ClusterView, slim_pod
from elastic_operator.render import pods as render
from elastic_operator.render.pods import WorkerTemplate

JOB = render.JobRef("ns", "j", "uid-1")
TEMPLATE = WorkerTemplate(
    image="trainer:1",
    command=("python", "train.py"),
    resources={"limits": {"nvidia.com/gpu": "2", "cpu": "4"}, "requests": {"memory": "8Gi"}},
    env=({"name": "A", "value": "x" * 500},),
)


def stored(pod: dict[str, Any], status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    out = copy.deepcopy(pod)
    out["metadata"].update(uid="pod-uid", resourceVersion="7", **meta)
    out["spec"]["nodeName"] = "n1"
    out["status"] = status
    return out


WORKER = render.worker_pod(JOB, TEMPLATE, 3, "n1", "j-w3", "http://op:8080")
RDZV = render.rendezvous_pod(JOB, TEMPLATE, "j-rdzv-1", 29400)
CASES = [
    stored(WORKER, {"phase": "Running", "podIP": "10.0.0.5", "startTime": "2027-01-01T00:00:00Z"}),
    stored(
        WORKER,
        {
            "phase": "Failed",
            "reason": "Evicted",
            "containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": 137, "reason": "OOM"}}}],
        },
    ),
    stored(
        WORKER,
        {"phase": "Running", "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "x"}]},
        deletionTimestamp="2027-01-01T00:00:00Z",
    ),
    stored(RDZV, {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0}}}]}),
    stored(RDZV, {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "Pull"}}}]}),
]


@pytest.mark.parametrize("pod", CASES)
def test_what_the_operator_reads_is_the_same(pod: dict[str, Any]) -> None:
    slim = slim_pod(pod)
    assert pod_facts(slim) == pod_facts(pod)
    assert pod_requests(slim) == pod_requests(pod)
    assert pod_holds_resources(slim) == pod_holds_resources(pod)
    assert slim["metadata"]["labels"] == pod["metadata"]["labels"]
    assert len(json.dumps(slim)) < len(json.dumps(pod)) / 2


def test_the_view_stores_the_slim_copy_and_still_orders_by_resource_version() -> None:
    view = ClusterView()
    view.observe("Pod", "ADDED", CASES[0])
    assert view.pods[("ns", "j-w3")] == slim_pod(CASES[0])
    older = copy.deepcopy(CASES[1])
    older["metadata"]["resourceVersion"] = "6"
    view.observe("Pod", "MODIFIED", older)
    assert view.pods[("ns", "j-w3")]["status"]["phase"] == "Running"
