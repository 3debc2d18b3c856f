"""Start-up listing outside the informers' scope, and the periodic resync of the view.

The planner must not run on a half-filled view (a job's pods not yet seen would look lost), so start-up waits for
every informer's first listing (k8s/watch.py). A periodic resync of the operator's own pods removes any pod the
watch missed a DELETED event for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from elastic_operator.k8s.client import KubeClient
from elastic_operator.k8s.view import ClusterView, key_of
from elastic_operator.render.names import JOB_LABEL

JSON = dict[str, Any]


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


async def list_foreign_pods(client: KubeClient, view: ClusterView, namespaces: list[str]) -> None:
    """In namespaced mode the informers watch pods only in the watched namespaces; pods elsewhere still use the
    nodes' capacity, so they are listed once at start-up (the scheduler sees their later changes; the policy does
    not until a restart: docs/design.md, watch scope)."""
    listing = await _list(client, "/api/v1/pods")
    for item in listing.get("items", []):
        if (item.get("metadata") or {}).get("namespace") not in namespaces:
            item.setdefault("kind", "Pod")
            view.observe("Pod", None, item)


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
