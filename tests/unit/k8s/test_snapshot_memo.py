"""The snapshot's memos (k8s/snapshot.py: jobs, nodes, pods rebuilt only when the view holds another object) never
give a different snapshot than building everything afresh, over a seeded run of the changes a cluster makes:
pods starting, finishing, going away, nodes going NotReady or tainted, statuses rewritten, throughput reported, the
clock moving, jobs coming and going."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from elastic_operator.config import OperatorSettings
from elastic_operator.k8s import snapshot as snap
from elastic_operator.k8s.derived import StatusDerived
from elastic_operator.k8s.jobs import parse_job
from elastic_operator.k8s.snapshot import Throughputs, build_snapshot
from elastic_operator.k8s.view import ClusterView, Key
from elastic_operator.policy.snapshot import Snapshot
from elastic_operator.render.names import JOB_LABEL, ROLE_LABEL, SLOT_LABEL, WORKER
from tests.unit.k8s.test_pod_slots import GPU, NOW, job, node

NODES = 6
JOBS = 8


def running_status(slots: list[tuple[int, str]]) -> dict[str, Any]:
    return {
        "phase": "Running",
        "rescaleGeneration": 1,
        "startTime": "2027-01-15T08:00:00Z",
        "progress": {"remainingSamples": 1000},
        "controller": {
            "placement": [{"slot": s, "node": n, "seen": True} for s, n in slots],
            "members": [s for s, _ in slots],
            "nextSlot": max((s for s, _ in slots), default=-1) + 1,
        },
    }


def worker(job_name: str, slot: int, node_name: str, phase: str, rv: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{job_name}-w{slot}",
            "namespace": "ns",
            "resourceVersion": str(rv),
            "labels": {JOB_LABEL: job_name, SLOT_LABEL: str(slot), ROLE_LABEL: WORKER},
        },
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "resources": {"limits": {GPU: "1"}}}]},
        "status": {"phase": phase},
    }


DERIVED = StatusDerived()  # as the controller keeps it: the same runtime object while a job's status is the same


def build(view: ClusterView, throughputs: Throughputs, now: float) -> Snapshot:
    contexts = {}
    runtimes = {}
    for key, obj in view.jobs.items():
        contexts[key] = parse_job(obj)
        runtimes[key] = DERIVED.of(key, obj).runtime
    return build_snapshot(view, contexts, runtimes, view.pods_by_job(), OperatorSettings(), throughputs, now)


def afresh(view: ClusterView, throughputs: Throughputs, now: float) -> Snapshot:
    """The same build with every memo empty (and the memos put back as they were, so the run keeps them warm)."""
    jobs, nodes, pods = dict(snap._job_memo), dict(snap._node_memo), dict(snap._pod_memo)
    snap._job_memo.clear()
    snap._node_memo.clear()
    snap._pod_memo.clear()
    try:
        return build(view, throughputs, now)
    finally:
        snap._job_memo.clear()
        snap._job_memo.update(jobs)
        snap._node_memo.clear()
        snap._node_memo.update(nodes)
        snap._pod_memo.clear()
        snap._pod_memo.update(pods)


@pytest.mark.parametrize("seed", range(5))
def test_memoised_snapshots_equal_fresh_ones(seed: int) -> None:
    rng = random.Random(seed)
    view = ClusterView()
    throughputs = Throughputs()
    rv = 10
    for i in range(NODES):
        view.observe("Node", None, node(f"n{i}", {GPU: "4", "cpu": "32", "pods": "20"}))
    for j in range(JOBS):
        obj = job()
        obj["metadata"].update(name=f"j{j}", uid=f"uid-{j}")
        view.observe("TrainingJob", None, obj)
    now = NOW
    hits = 0
    for _ in range(150):
        rv += 1
        what = rng.randrange(8)
        name = f"j{rng.randrange(JOBS)}"
        key: Key = ("ns", name)
        if what == 0 and key in view.jobs:  # admitted or rescaled: a new status naming its placement
            slots = [(s, f"n{rng.randrange(NODES)}") for s in range(rng.randint(1, 3))]
            obj = copy.deepcopy(view.jobs[key])
            obj["metadata"]["resourceVersion"] = str(rv)
            obj["status"] = running_status(slots)
            view.observe("TrainingJob", "MODIFIED", obj)
            for s, n in slots:
                view.observe("Pod", "ADDED", worker(name, s, n, "Pending", rv))
        elif what == 1:  # a pod changes phase (a new object for it)
            pods = sorted(view.pods)
            if pods:
                pod = copy.deepcopy(view.pods[rng.choice(pods)])
                pod["metadata"]["resourceVersion"] = str(rv)
                pod["status"] = {"phase": rng.choice(["Running", "Succeeded", "Failed"])}
                view.observe("Pod", "MODIFIED", pod)
        elif what == 2:  # a pod goes away
            pods = sorted(view.pods)
            if pods:
                view.observe("Pod", "DELETED", view.pods[rng.choice(pods)])
        elif what == 3:  # a node goes NotReady, is tainted, or comes back
            changed = copy.deepcopy(view.nodes[f"n{rng.randrange(NODES)}"])
            changed["metadata"]["resourceVersion"] = str(rv)
            changed["status"]["conditions"] = [{"type": "Ready", "status": rng.choice(["True", "False"])}]
            changed["spec"] = {"taints": [{"key": "k", "effect": "NoSchedule"}]} if rng.random() < 0.3 else {}
            view.observe("Node", "MODIFIED", changed)
        elif what == 4:  # throughput reported (the memo must not keep the old curve)
            throughputs.record(key, rng.randint(1, 3), 1, rng.uniform(10, 100))
        elif what == 5:  # someone else's pod on a node
            other = worker("x", rng.randrange(100), f"n{rng.randrange(NODES)}", "Running", rv)
            other["metadata"].update(namespace="other", labels={})
            view.observe("Pod", "ADDED", other)
        elif what == 6 and key in view.jobs:  # the job is deleted, or comes back
            view.observe("TrainingJob", "DELETED", view.jobs[key])
        elif what == 6:
            obj = job()
            obj["metadata"].update(name=name, uid=f"uid-{name}-{rv}", resourceVersion=str(rv))
            view.observe("TrainingJob", "ADDED", obj)
        now += rng.choice([0.0, 0.5, 7.0])
        memoised = build(view, throughputs, now)
        assert memoised == afresh(view, throughputs, now)
        hits += sum(1 for j in memoised.jobs if any(j is m.job for m in snap._job_memo.values()))
    assert hits > 100  # the memo was used, not rebuilt every time
