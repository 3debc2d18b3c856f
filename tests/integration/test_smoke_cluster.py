"""Smoke test of the local control plane itself: real scheduler decisions over kwok GPU nodes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hack.devcluster import DevCluster, versions
from tests.support.kube import TEST_LABEL, NodeFactory
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster


def gpu_pod(name: str, gpus: int, test_id: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "nodeSelector": {TEST_LABEL: test_id},
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.invalid/none:0",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def pod(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def phase(cluster: DevCluster, namespace: str, name: str) -> str | None:
    p = pod(cluster, namespace, name)
    return p["status"].get("phase") if p else None


def test_apiserver_reports_pinned_version(cluster: DevCluster) -> None:
    assert cluster.server_version() == versions()["KUBERNETES_VERSION"]


def test_scheduler_places_gpu_pods_and_respects_capacity(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, test_id: str
) -> None:
    nodes = fake_nodes(2, gpus=8)
    for name, gpus in (("a", 4), ("b", 4), ("c", 8)):
        cluster.apply(gpu_pod(name, gpus, test_id), "-n", namespace)
    for name in ("a", "b", "c"):
        wait_for(
            lambda n=name: phase(cluster, namespace, n) == "Running",
            timeout=60,
            message=f"pod {name} Running",
        )
    placed = {n: pod(cluster, namespace, n)["spec"]["nodeName"] for n in ("a", "b", "c")}  # type: ignore[index]
    assert set(placed.values()) == set(nodes)
    assert placed["a"] == placed["b"] != placed["c"], placed

    cluster.apply(gpu_pod("d", 8, test_id), "-n", namespace)

    def unschedulable() -> bool:
        p = pod(cluster, namespace, "d")
        conditions = (p or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    wait_for(unschedulable, timeout=60, message="pod d Pending with reason Unschedulable")
    assert phase(cluster, namespace, "d") == "Pending"

    # The machine under a and b goes away: Kubernetes fails/deletes its pods; nothing moves them silently.
    cluster.remove_node(placed["a"])

    def gone_or_failed(name: str) -> bool:
        p = pod(cluster, namespace, name)
        return p is None or p["status"].get("phase") == "Failed"

    wait_for(lambda: gone_or_failed("a") and gone_or_failed("b"), timeout=150, message="pods of the lost node gone")
    assert phase(cluster, namespace, "c") == "Running"
    assert pod(cluster, namespace, "c")["spec"]["nodeName"] == placed["c"]  # type: ignore[index]
    assert phase(cluster, namespace, "d") == "Pending", "the 8-GPU pod must not fit anywhere now"


def test_kwok_stages_finish_pods_by_annotation(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, test_id: str
) -> None:
    fake_nodes(1, gpus=2)
    ok = gpu_pod("ok", 1, test_id, **{"kwok.elastic.training/exit-code": "0"})
    bad = gpu_pod(
        "bad",
        1,
        test_id,
        **{"kwok.elastic.training/exit-code": "3", "kwok.elastic.training/exit-after": "1s"},
    )
    cluster.apply(ok, "-n", namespace)
    cluster.apply(bad, "-n", namespace)
    wait_for(lambda: phase(cluster, namespace, "ok") == "Succeeded", timeout=60, message="pod ok Succeeded")
    wait_for(lambda: phase(cluster, namespace, "bad") == "Failed", timeout=60, message="pod bad Failed")
    status = pod(cluster, namespace, "bad")["status"]  # type: ignore[index]
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3

    # A running pod finished later by the test, as the operator tests do.
    cluster.apply(gpu_pod("later", 1, test_id), "-n", namespace)
    wait_for(lambda: phase(cluster, namespace, "later") == "Running", timeout=60, message="pod later Running")
    cluster.kubectl("annotate", "pod", "later", "-n", namespace, "kwok.elastic.training/exit-code=0")
    wait_for(lambda: phase(cluster, namespace, "later") == "Succeeded", timeout=60, message="pod later Succeeded")

    cluster.kubectl("delete", "pod", "ok", "-n", namespace, "--wait=false")
    wait_for(lambda: pod(cluster, namespace, "ok") is None, timeout=60, message="deleted pod gone")
