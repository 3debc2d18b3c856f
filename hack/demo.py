"""`make demo`: what the product can show today, for real, on one machine.

Today (before the full elastic-training demo lands) it runs the control-plane smoke scenario: a real API server,
scheduler and controller-manager with two fake 8-GPU nodes; GPU pods are placed, one stays Unschedulable, and
everything is torn down. Each step prints what happened.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hack.devcluster import DevCluster, FakeNode, wait_for


def _pod(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": "demo.invalid/train:0",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def _pod_status(cluster: DevCluster, name: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(cluster.kubectl("get", "pod", name, "-o", "json").stdout)["status"]
    return status


def main() -> int:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="elastic-demo-") as tmp:
        print("1. Building (or reusing) the pinned control plane and starting it on loopback ...", flush=True)
        cluster = DevCluster.start(Path(tmp), [FakeNode("gpu-node-a", gpus=8), FakeNode("gpu-node-b", gpus=8)])
        try:
            print(f"   Kubernetes {cluster.server_version()} at {cluster.server}")
            cluster.apply_crds()
            crds = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
            print(f"   CRDs served: {', '.join(c.split('/')[-1] for c in crds) or '(none generated yet)'}")
            print(cluster.kubectl("get", "nodes", "-L", "elastic.training/fake-node").stdout)
            print("2. Creating pods asking for 4, 4 and 8 GPUs, then one more asking for 8 ...")
            for name, gpus in (("train-a", 4), ("train-b", 4), ("train-c", 8)):
                cluster.apply(_pod(name, gpus))
            for name in ("train-a", "train-b", "train-c"):
                wait_for(lambda n=name: _pod_status(cluster, n).get("phase") == "Running", timeout=60,
                         message=f"{name} Running")  # fmt: skip
            cluster.apply(_pod("train-d", 8))

            def reason() -> str | None:
                for c in _pod_status(cluster, "train-d").get("conditions", []):
                    if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable":
                        return str(c.get("message", ""))
                return None

            message = wait_for(reason, timeout=60, message="train-d Unschedulable")
            print(cluster.kubectl("get", "pods", "-o", "wide").stdout)
            print(f"   train-d stays Pending: {message}")
        finally:
            print("3. Tearing the control plane down ...")
            cluster.stop()
    print(f"Done in {time.monotonic() - t0:.0f} s: the scheduler packed 16 GPUs of requests onto two 8-GPU nodes and")
    print("refused a 17th-to-24th GPU. The elastic-training demo (grow, shrink, sweep) replaces this scenario when")
    print("the TrainingJob controller lands.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
