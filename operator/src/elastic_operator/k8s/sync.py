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


# Only the metadata of each item, as kubectl's `--output=name` asks for (falls back to whole objects)
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
PAGE = 500


async def resync_own_pods(client: KubeClient, view: ClusterView) -> int:
    """Drop pods of ours that the API server no longer has. Returns how many were dropped.

    Listed by pages of metadata only: the whole objects of every pod of every job in one response were the
    operator's peak memory at bench/scale's size (thousands of pods parsed at once, every minute). A pod newer than
    the listing (created while the pages were read) is not judged by it."""
    present: set[tuple[str, str]] = set()
    listed_at = ""
    token = ""
    while True:
        query = [("labelSelector", JOB_LABEL), ("limit", str(PAGE))] + ([("continue", token)] if token else [])
        page = await client.request("GET", "/api/v1/pods", query=query, accept=METADATA_ONLY)
        meta = page.get("metadata") or {}
        listed_at = listed_at or str(meta.get("resourceVersion") or "")
        present.update(key_of(p) for p in page.get("items", []))
        token = str(meta.get("continue") or "")
        if not token:
            break
    stale = [
        key
        for key, pod in view.pods.items()
        if JOB_LABEL in (pod.get("metadata", {}).get("labels") or {})
        and key not in present
        and not _newer_than(pod, listed_at)
    ]
    for key in stale:
        view.observe("Pod", "DELETED", view.pods[key])
    return len(stale)


def _newer_than(obj: JSON, version: str) -> bool:
    """Whether obj's resourceVersion is after `version` (etcd revisions; anything else cannot be compared and
    counts as not newer, as before)."""
    mine = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return mine.isdigit() and version.isdigit() and int(mine) > int(version)
