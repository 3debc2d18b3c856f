"""The TrainingJob controller on the real control plane: admit, grow, shrink for a higher-priority job, grow back,
recover from an operator SIGKILL and from a lost node, reject an invalid spec. The test plays the trainers through
the report endpoint and finishes pods through kwok; a watcher checks every pod event for over-commitment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hack.devcluster import DevCluster
from tests.support.capacity import CapacityWatcher
from tests.support.kube import TEST_LABEL, NodeFactory
from tests.support.operator import OperatorProcess
from tests.support.trainers import converge, get_job, job_manifest, phase_and_workers, workers
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster


def test_grow_shrink_for_priority_and_grow_back(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, operator: OperatorProcess
) -> None:
    nodes = fake_nodes(2, gpus=4)
    watcher = CapacityWatcher(cluster, namespace, dict.fromkeys(nodes, 4))
    try:
        cluster.apply(job_manifest("low", min_workers=2, max_workers=6), "-n", namespace)
        converge(operator, cluster, namespace, "low", "Running", 6)
        assert {p["spec"]["nodeName"] for p in workers(cluster, namespace, "low")} == set(nodes)

        cluster.apply(job_manifest("high", min_workers=4, max_workers=4, priority=10), "-n", namespace)
        converge(operator, cluster, namespace, "high", "Running", 4)
        converge(operator, cluster, namespace, "low", "Running", 4)
        low = get_job(cluster, namespace, "low")["status"]
        assert low["rescales"]["shrink"] >= 1
        assert "high" in low["lastDecision"]["reason"] or low["lastDecision"]["action"] == "shrink"

        # high finishes (kwok marks its pods Succeeded): low grows back to 6
        for pod in workers(cluster, namespace, "high"):
            cluster.kubectl("annotate", "pod", pod["metadata"]["name"], "-n", namespace,
                            "kwok.elastic.training/exit-code=0")  # fmt: skip
        wait_for(lambda: phase_and_workers(cluster, namespace, "high")[0] == "Succeeded", timeout=60,
                 message="high Succeeded")  # fmt: skip
        converge(operator, cluster, namespace, "low", "Running", 6)

        events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        reasons = {e.get("reason") for e in json.loads(events)["items"]}
        assert {"Admitted", "Growing", "Shrinking", "Completed"} <= reasons, reasons
        metrics = operator.metrics()
        assert 'elastic_training_rescales_total{direction="shrink"' in metrics
        assert "elastic_training_queue_depth" in metrics
    finally:
        watcher.stop()
    assert watcher.events > 0
    assert watcher.violations == []


def live_pods(cluster: DevCluster, namespace: str) -> list[dict[str, Any]]:
    return [p for p in cluster.get_json("pods", "-n", namespace)["items"] if not p["metadata"].get("deletionTimestamp")]


def test_operator_sigkill_mid_rescale_converges_without_duplicates_or_orphans(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, operator: OperatorProcess
) -> None:
    fake_nodes(2, gpus=2)
    cluster.apply(job_manifest("a", min_workers=2, max_workers=4), "-n", namespace)
    converge(operator, cluster, namespace, "a", "Running", 4)
    cluster.apply(job_manifest("b", min_workers=2, max_workers=2, priority=10), "-n", namespace)
    wait_for(lambda: phase_and_workers(cluster, namespace, "a")[0] == "Rescaling", timeout=30,
             message="a starts shrinking")  # fmt: skip
    operator.kill()  # in the middle of the shrink: leaving workers not yet deleted, b not yet started
    operator.start()
    converge(operator, cluster, namespace, "b", "Running", 2)
    converge(operator, cluster, namespace, "a", "Running", 2)
    names = [p["metadata"]["name"] for p in live_pods(cluster, namespace)]
    assert len(names) == len(set(names))
    status_a = get_job(cluster, namespace, "a")["status"]
    placed = {f"a-w{s['slot']}" for s in status_a["controller"]["placement"]}
    a_workers = {p["metadata"]["name"] for p in workers(cluster, namespace, "a")}
    assert a_workers == placed, (a_workers, placed)  # nothing orphaned, nothing missing
    rdzv = [n for n in names if "-rdzv-" in n]
    assert sorted(rdzv) == ["a-rdzv-1", "b-rdzv-1"], rdzv  # one rendezvous server per job, never duplicated
    assert status_a["restarts"]["workerFailed"] == 0


def test_lost_node_shrinks_the_job_and_it_regrows_when_the_node_returns(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, operator: OperatorProcess, test_id: str
) -> None:
    nodes = fake_nodes(2, gpus=2)
    cluster.apply(job_manifest("j", min_workers=1, max_workers=4), "-n", namespace)
    converge(operator, cluster, namespace, "j", "Running", 4)
    lost = nodes[1]
    cluster.remove_node(lost)
    converge(operator, cluster, namespace, "j", "Running", 2)
    status = get_job(cluster, namespace, "j")["status"]
    assert status["restarts"]["workerLost"] == 2
    assert status["restarts"]["workerFailed"] == 0
    assert all(p["spec"]["nodeName"] == nodes[0] for p in workers(cluster, namespace, "j"))
    from hack.devcluster import FakeNode

    cluster.add_node(FakeNode(name=lost, gpus=2, labels={TEST_LABEL: test_id}))
    converge(operator, cluster, namespace, "j", "Running", 4)


def test_fifty_jobs_on_eight_nodes_all_complete_without_a_manual_step(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, operator: OperatorProcess
) -> None:
    from tests.support.drain import run_drain

    nodes = fake_nodes(8, gpus=4)
    watcher = CapacityWatcher(cluster, namespace, dict.fromkeys(nodes, 4))
    try:
        result = run_drain(cluster, namespace, jobs=50, run_s=3, timeout=400)
    finally:
        watcher.stop()
    print(f"drain: {result}")  # the figure is a benchmark's (make bench-drain), not an assertion
    assert watcher.violations == []
