"""Initial listing and periodic resync of the view.

The planner must not run on a half-filled view (a job's pods not yet seen would look lost), so start-up lists
every watched kind once before the first round. A periodic resync of the operator's own pods removes any pod the
watch missed a DELETED event for (the window between a list and a watch).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from elastic_operator.k8s.client import GROUP, VERSION, KubeClient
from elastic_operator.k8s.view import ClusterView, key_of
from elastic_operator.render.names import JOB_LABEL

JSON = dict[str, Any]

CLUSTER_LISTS = (("Node", "/api/v1/nodes"), ("Pod", "/api/v1/pods"))
CUSTOM = (("TrainingJob", "trainingjobs"), ("TuningSweep", "tuningsweeps"))


async def _list(client: KubeClient, path: str, deadline_s: float = 120.0) -> JSON:
    """GET a list, retrying what the API server says is transient (429 while a new CRD's storage initialises,
    5xx) with exponential backoff up to `deadline_s`."""
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + deadline_s, 0.25
    while True:
        try:
            return await client.request("GET", path)
        except ApiException as exc:
            transient = exc.status == 429 or (exc.status or 0) >= 500
            if not transient or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)  # backoff between retries, not synchronisation
        delay = min(delay * 2, 5.0)


def _lists(namespaces: list[str]) -> list[tuple[str, str]]:
    """Nodes and pods cluster-wide (capacity); our kinds cluster-wide, or per watched namespace (namespaced RBAC)."""
    out = list(CLUSTER_LISTS)
    for kind, plural in CUSTOM:
        if namespaces:
            out += [(kind, f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}") for ns in namespaces]
        else:
            out.append((kind, f"/apis/{GROUP}/{VERSION}/{plural}"))
    return out


async def initial_sync(client: KubeClient, view: ClusterView, namespaces: list[str] | None = None) -> None:
    for kind, path in _lists(list(namespaces or [])):
        listing = await _list(client, path)
        for item in listing.get("items", []):
            item.setdefault("kind", kind)
            view.observe(kind, None, item)


async def resync_own_pods(client: KubeClient, view: ClusterView) -> int:
    """Drop pods of ours that the API server no longer has. Returns how many were dropped."""
    listing = await client.request("GET", "/api/v1/pods", query=[("labelSelector", JOB_LABEL)])
    present = {key_of(p) for p in listing.get("items", [])}
    stale = [
        key
        for key, pod in view.pods.items()
        if JOB_LABEL in (pod.get("metadata", {}).get("labels") or {}) and key not in present
    ]
    for key in stale:
        view.observe("Pod", "DELETED", view.pods[key])
    return len(stale)
