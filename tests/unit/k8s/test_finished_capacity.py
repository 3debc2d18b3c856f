"""A job whose member pods all Succeeded is completed by this round's lifecycle step: the same round's plan gives
its capacity to the queue (not one round later), and a member still running keeps its GPU."""

from __future__ import annotations

import copy
from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.k8s.derived import derive
from elastic_operator.k8s.jobs import parse_job
from elastic_operator.k8s.snapshot import Throughputs, plan_changes
from elastic_operator.k8s.view import ClusterView, Key
from elastic_operator.lifecycle.state import JobRuntime
from elastic_operator.render.names import JOB_LABEL, ROLE_LABEL, SLOT_LABEL, WORKER
from tests.unit.k8s.test_pod_slots import GPU, NOW, job, node

RUNNING_STATUS = {
    "phase": "Running",
    "rescaleGeneration": 1,
    "startTime": "2027-01-15T08:00:00Z",
    "controller": {"placement": [{"slot": 0, "node": "n", "seen": True}], "members": [0], "nextSlot": 1},
}


def worker_pod(phase: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "done-w0",
            "namespace": "ns",
            "resourceVersion": "2",
            "labels": {JOB_LABEL: "done", SLOT_LABEL: "0", ROLE_LABEL: WORKER},
        },
        "spec": {"nodeName": "n", "containers": [{"name": "c", "resources": {"limits": {GPU: "1"}}}]},
        "status": {"phase": phase},
    }


def plan_with(pod_phase: str) -> dict[Key, Any]:
    view = ClusterView()
    view.observe("Node", None, node("n", {GPU: "1", "cpu": "32", "pods": "10"}))
    done = job()
    done["metadata"].update(name="done", uid="uid-done")
    done["status"] = copy.deepcopy(RUNNING_STATUS)
    waiting = job()
    waiting["metadata"].update(creationTimestamp="2027-01-15T09:00:00Z")
    view.observe("Pod", None, worker_pod(pod_phase))
    contexts = {}
    runtimes: dict[Key, JobRuntime] = {}
    for obj in (done, waiting):
        view.observe("TrainingJob", None, obj)
        key = ("ns", obj["metadata"]["name"])
        contexts[key] = parse_job(obj)
        runtimes[key] = derive(obj.get("status")).runtime
    changes, _, _ = plan_changes(view, contexts, runtimes, view.pods_by_job(), OperatorSettings(), NOW, Throughputs())
    return changes


def test_the_gpu_of_a_job_whose_members_all_succeeded_goes_to_the_queue_in_the_same_round() -> None:
    changes = plan_with("Succeeded")
    assert changes[("ns", "j")].change.action == "admit"
    assert ("ns", "done") not in changes  # no grow back to its minimum: it is finishing


def test_a_member_still_running_keeps_its_gpu() -> None:
    assert ("ns", "j") not in plan_with("Running")
