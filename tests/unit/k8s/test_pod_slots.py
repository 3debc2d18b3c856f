"""Pod slots: every pod takes one of its node's `pods` (as the scheduler counts them), so the policy never places a
worker on a node whose slots are full (it would stay Pending: "Too many pods")."""

from __future__ import annotations

from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.k8s.derived import derive
from elastic_operator.k8s.jobs import parse_job
from elastic_operator.k8s.snapshot import Throughputs, plan_changes
from elastic_operator.k8s.view import ClusterView

NOW = 1_800_000_000.0
GPU = "nvidia.com/gpu"


def node(name: str, allocatable: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {}, "resourceVersion": "1"},
        "spec": {},
        "status": {"allocatable": allocatable, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def small_pod(name: str, node_name: str) -> dict[str, Any]:
    """Someone else's running pod: no GPU, tiny requests, one pod slot."""
    return {
        "metadata": {"name": name, "namespace": "other", "resourceVersion": "1", "labels": {}},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"requests": {"cpu": "10m"}}}]},
        "status": {"phase": "Running"},
    }


def job() -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": "j",
            "namespace": "ns",
            "uid": "uid-j",
            "generation": 1,
            "resourceVersion": "1",
            "creationTimestamp": "2027-01-15T08:00:00Z",
        },
        "spec": {
            "minWorkers": 1,
            "maxWorkers": 1,
            "template": {"image": "trainer:1", "command": ["train"], "resources": {"limits": {GPU: "1"}}},
        },
    }


def plan_for(view: ClusterView) -> tuple[dict[Any, Any], dict[Any, Any]]:
    obj = job()
    view.observe("TrainingJob", None, obj)
    key = ("ns", "j")
    contexts = {key: parse_job(obj)}
    runtimes = {key: derive(obj.get("status")).runtime}
    changes, queued, _ = plan_changes(view, contexts, runtimes, {}, OperatorSettings(), NOW, Throughputs())
    return changes, queued


def test_a_worker_goes_to_the_node_with_a_free_pod_slot() -> None:
    view = ClusterView()
    view.observe("Node", None, node("full", {GPU: "2", "cpu": "32", "pods": "3"}))
    view.observe("Node", None, node("roomy", {GPU: "2", "cpu": "32", "pods": "4"}))
    for i in range(3):  # "full" has its three pod slots taken, its GPUs free; "roomy" the same GPUs, one slot left
        view.observe("Pod", None, small_pod(f"p{i}", "full"))
        view.observe("Pod", None, small_pod(f"q{i}", "roomy"))
    changes, _ = plan_for(view)
    assert changes[("ns", "j")].change.add_nodes == ("roomy",)


def test_a_job_waits_when_only_pod_slots_are_missing_and_says_so() -> None:
    view = ClusterView()
    view.observe("Node", None, node("full", {GPU: "2", "cpu": "32", "pods": "2"}))
    for i in range(2):
        view.observe("Pod", None, small_pod(f"p{i}", "full"))
    changes, queued = plan_for(view)
    assert ("ns", "j") not in changes
    assert "pods" in queued[("ns", "j")]["reason"]


def test_a_node_that_reports_no_pod_limit_has_none() -> None:
    view = ClusterView()
    view.observe("Node", None, node("n", {GPU: "1", "cpu": "32"}))
    for i in range(200):
        view.observe("Pod", None, small_pod(f"p{i}", "n"))
    changes, _ = plan_for(view)
    assert changes[("ns", "j")].change.add_nodes == ("n",)
