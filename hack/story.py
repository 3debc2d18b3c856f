"""The elastic story, for real, on one machine: a real API server and scheduler, the real operator, one dev-only
process node whose pods are host processes running real torch (the digits example), real checkpoints.

A 2..4-worker job starts at 4 workers; a higher-priority 2-worker job arrives and the first one shrinks (its
leaving workers checkpoint first) so the second runs; both train to the end. Used by `make demo` and by
tests/integration/test_real_training.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.devcluster import DevCluster, wait_for
from hack.processnode import spawn_process_node
from tests.support.operator import OperatorProcess

NAMESPACE = "demo"


def digits_job(name: str, lo: int, hi: int, epochs: int, workdir: Path, priority: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "minWorkers": lo,
            "maxWorkers": hi,
            "priority": priority,
            "elasticity": {"rescaleCooldownSeconds": 0},
            "template": {
                "image": "local/trainer:dev",  # ignored by the process node
                "command": [
                    "python",
                    "-m",
                    "elastic_trainer.examples.digits",
                    "--epochs",
                    str(epochs),
                    "--step-delay",
                    "0.02",
                ],
                "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
            },
            "checkpoint": {"hostPath": str(workdir / f"checkpoints-{name}"), "path": "/checkpoints"},
        },
    }


@dataclass
class Story:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self, cluster: DevCluster, t0: float) -> list[dict[str, Any]]:
        items = cluster.get_json("trainingjobs", "-n", NAMESPACE)["items"]
        out = []
        for item in items:
            s = item.get("status", {})
            progress = s.get("progress") or {}
            out.append(
                {
                    "t": round(time.monotonic() - t0, 1),
                    "job": item["metadata"]["name"],
                    "phase": s.get("phase", ""),
                    "workers": (s.get("workers") or {}).get("current", 0),
                    "step": progress.get("step"),
                    "accuracy": (progress.get("metrics") or {}).get("accuracy"),
                    "decision": (s.get("lastDecision") or {}).get("reason", "")[:60],
                    "rescales": s.get("rescales") or {},
                }
            )
        self.rows.extend(out)
        return out


def run(workdir: Path, show: Callable[[list[dict[str, Any]]], None] = lambda rows: None) -> dict[str, Any]:
    """Run the story in `workdir`; returns a summary (final status of each job, timeline rows)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = DevCluster.start(workdir / "cluster")
    node = op = None
    story = Story()
    try:
        cluster.apply_crds()
        cluster.kubectl("create", "namespace", NAMESPACE)
        wait_for(
            lambda: cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0,
            timeout=60,
            message="default ServiceAccount",
        )
        node = spawn_process_node(
            name="process-node-0",
            state_dir=workdir / "node",
            kubeconfig=cluster.kubeconfig,
            gpus=4,
            cpu="8",
            memory="16Gi",
            labels={"elastic.training/demo": "true"},
        )
        op = OperatorProcess(
            cluster,
            workdir / "operator.log",
            ["--namespaces", NAMESPACE, "--node-selector", "elastic.training/demo=true"],
        )
        op.start()
        t0 = time.monotonic()

        def phase(name: str) -> str:
            return str(cluster.get_json("trainingjob", name, "-n", NAMESPACE).get("status", {}).get("phase", ""))

        def tick(cond: Callable[[], bool]) -> Callable[[], bool]:
            def check() -> bool:
                show(story.snapshot(cluster, t0))
                return cond()

            return check

        cluster.apply(digits_job("base", 2, 4, 10, workdir), "-n", NAMESPACE)
        wait_for(tick(lambda: phase("base") == "Running"), timeout=180, interval=2, message="base Running")
        cluster.apply(digits_job("urgent", 2, 2, 4, workdir, priority=10), "-n", NAMESPACE)
        wait_for(
            tick(lambda: phase("urgent") in ("Succeeded", "Failed")), timeout=400, interval=2, message="urgent finished"
        )
        wait_for(
            tick(lambda: phase("base") in ("Succeeded", "Failed")), timeout=600, interval=2, message="base finished"
        )
        final = {
            j["metadata"]["name"]: j.get("status", {})
            for j in cluster.get_json("trainingjobs", "-n", NAMESPACE)["items"]
        }
        events = [  # the operator's own explanations, oldest first
            e
            for e in json.loads(cluster.kubectl("get", "events.events.k8s.io", "-n", NAMESPACE, "-o", "json").stdout)[
                "items"
            ]
            if e.get("reportingController") == "elastic.training/operator"
        ]
        events.sort(key=lambda e: e.get("eventTime") or "")
        return {
            "final": final,
            "events": [
                (
                    e.get("regarding", {}).get("name") or e.get("involvedObject", {}).get("name"),
                    e.get("reason"),
                    e.get("note") or e.get("message"),
                )
                for e in events
            ],
            "rows": story.rows,
            "seconds": round(time.monotonic() - t0, 1),
        }
    finally:
        if op is not None:
            op.stop()
        if node is not None:
            node.stop()
        cluster.stop()
