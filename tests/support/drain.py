"""The drain scenario shared by the integration test and `make bench-drain`: N jobs queued on M kwok nodes, each
worker pod finishing by itself after a few seconds (kwok stage annotations in the job template), until all jobs
have Succeeded. No manual step: the operator admits, grows and completes everything."""

from __future__ import annotations

import json
import time
from typing import Any

from hack.devcluster import DevCluster, wait_for

GPU = "nvidia.com/gpu"


def drain_job(name: str, run_s: float, max_workers: int = 4) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "minWorkers": 1,
            "maxWorkers": max_workers,
            "template": {
                "image": "registry.invalid/trainer:0",
                "command": ["python", "train.py"],
                "resources": {"limits": {GPU: "1"}},
                "annotations": {
                    "kwok.elastic.training/exit-code": "0",
                    "kwok.elastic.training/exit-after": f"{run_s}s",
                },
            },
            "elasticity": {"rescaleCooldownSeconds": 0},
            "ttlSecondsAfterFinished": 3600,
        },
    }


def run_drain(cluster: DevCluster, namespace: str, jobs: int, run_s: float, timeout: float) -> dict[str, Any]:
    """Create `jobs` jobs at once and wait until every one Succeeded. Returns timings."""
    start = time.monotonic()
    manifests = "\n---\n".join(json.dumps(drain_job(f"drain-{i:03d}", run_s)) for i in range(jobs))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifests, timeout=120)
    first_admit: list[float] = []

    def done() -> bool:
        items = cluster.get_json("trainingjobs", "-n", namespace)["items"]
        phases = [i.get("status", {}).get("phase") for i in items]
        if not first_admit and any(p not in (None, "Queued") for p in phases):
            first_admit.append(time.monotonic() - start)
        failed = [i["metadata"]["name"] for i in items if i.get("status", {}).get("phase") == "Failed"]
        if failed:
            raise AssertionError(f"jobs failed: {failed}")
        return len(items) == jobs and all(p == "Succeeded" for p in phases)

    wait_for(done, timeout=timeout, interval=1.0, message=f"{jobs} jobs Succeeded")
    return {
        "jobs": jobs,
        "pod_run_s": run_s,
        "drain_s": round(time.monotonic() - start, 2),
        "first_admission_s": round(first_admit[0], 2) if first_admit else None,
    }
