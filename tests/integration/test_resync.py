"""The periodic resync of the operator's own pods (k8s/sync.py) against the real API server: it reads the listing
page by page, metadata only, and drops from the view exactly the pods the API server no longer has, never one
created after the listing began."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from elastic_operator.k8s import sync
from elastic_operator.k8s.client import KubeClient
from elastic_operator.k8s.view import ClusterView
from elastic_operator.render.names import JOB_LABEL
from hack.devcluster import DevCluster

PODS = 5


def pod(name: str, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {JOB_LABEL: "resync"}},
        "spec": {"containers": [{"name": "c", "image": "trainer:1"}], "nodeSelector": {"nowhere": "true"}},
    }


def test_resync_pages_through_metadata_and_drops_only_lost_pods(
    cluster: DevCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "PAGE", 2)  # five pods of ours (and any other test's): several pages
    calls: list[str] = []
    items: list[dict[str, Any]] = []

    async def scenario() -> tuple[int, ClusterView]:
        client = await KubeClient.connect(cluster.kubeconfig)
        try:
            view = ClusterView()
            for i in range(PODS):
                stored = await client.create(pod(f"p{i}", namespace))
                assert stored is not None
                view.observe("Pod", "ADDED", stored)
            ghost = copy.deepcopy(view.pods[(namespace, "p0")])
            ghost["metadata"].update(name="lost", resourceVersion="1")  # the watch missed its DELETED event
            view.observe("Pod", "ADDED", ghost)
            newer = copy.deepcopy(view.pods[(namespace, "p0")])
            newer["metadata"].update(name="just-created", resourceVersion=str(10**15))  # after the listing
            view.observe("Pod", "ADDED", newer)
            client.on_request = lambda method, resource: calls.append(f"{method} {resource}")
            request = client.request

            async def recorded(*args: Any, **kwargs: Any) -> dict[str, Any]:
                page = await request(*args, **kwargs)
                items.extend(page.get("items", []))
                return page

            client.request = recorded  # type: ignore[method-assign]
            dropped = await sync.resync_own_pods(client, view)
            return dropped, view
        finally:
            await client.close()

    dropped, view = asyncio.run(scenario())
    assert dropped == 1
    kept = sorted(name for ns, name in view.pods if ns == namespace)
    assert kept == sorted([*(f"p{i}" for i in range(PODS)), "just-created"])
    assert items and all(set(item) <= {"kind", "apiVersion", "metadata"} for item in items)  # metadata only
    assert calls.count("GET pods") >= 3  # five pods of this test alone, two a page
