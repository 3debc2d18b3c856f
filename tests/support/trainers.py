"""Play the trainer side of the rescale protocol through the operator's report endpoint (no torch): the
integration tests and the chaos harness drive TrainingJobs on kwok nodes with these."""

from __future__ import annotations

from typing import Any

from hack.devcluster import DevCluster
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for

GPU = "nvidia.com/gpu"


def job_manifest(name: str, *, min_workers: int, max_workers: int, priority: int = 0, gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "minWorkers": min_workers,
            "maxWorkers": max_workers,
            "priority": priority,
            "template": {
                "image": "registry.invalid/trainer:0",
                "command": ["python", "-m", "elastic_trainer.examples.digits"],
                "resources": {"limits": {GPU: str(gpus)}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            },
            "elasticity": {"rescaleCooldownSeconds": 0},
        },
    }


def get_job(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get_json("trainingjob", name, "-n", namespace)
    return result


def workers(cluster: DevCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = cluster.get_json(
        "pods", "-n", namespace, "-l", f"elastic.training/job-name={name},elastic.training/role=worker"
    )
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def play_trainers(op: OperatorProcess, cluster: DevCluster, namespace: str, name: str, state: str = "running") -> int:
    """Every live worker of the job reports `state` for the generation its directive names. Returns the generation."""
    job = get_job(cluster, namespace, name)
    uid = job["metadata"]["uid"]
    generation = int(job.get("status", {}).get("rescaleGeneration") or 0)
    for pod in workers(cluster, namespace, name):
        pod_name = pod["metadata"]["name"]
        status, directive = op.report(namespace, name, uid, pod_name, generation=generation, state="waiting", step=0)
        assert status == 200, directive
        action = directive["action"]
        report_state = {"run": state, "exit": "exited"}.get(action, "waiting")
        status, _ = op.report(
            namespace, name, uid, pod_name, generation=directive["generation"], state=report_state, step=10,
            samples_per_s=100.0 * max(1, directive["nnodes"]), metrics={"loss": 0.5},  # scales linearly
        )  # fmt: skip
        assert status == 200
    return generation


def phase_and_workers(cluster: DevCluster, namespace: str, name: str) -> tuple[str, int, int]:
    status = get_job(cluster, namespace, name).get("status", {})
    w = status.get("workers", {})
    return status.get("phase", ""), int(w.get("current", 0)), int(w.get("target", 0))


def converge(op: OperatorProcess, cluster: DevCluster, namespace: str, name: str, phase: str, current: int) -> None:
    def check() -> bool:
        play_trainers(op, cluster, namespace, name)
        got = phase_and_workers(cluster, namespace, name)
        return got[0] == phase and got[1] == current and len(workers(cluster, namespace, name)) == current

    wait_for(check, timeout=90, interval=0.5, message=f"{name} {phase} with {current} workers")
