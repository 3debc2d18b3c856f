"""Initial listing and periodic resync of the view.

The planner must not run on a half-filled view (a job's pods not yet seen would look lost), so start-up lists
every watched kind once before the first round. A periodic resync of the operator's own pods removes any pod the
watch missed a DELETED event for (the window between a list and a watch).
"""

from __future__ import annotations

from elastic_operator.k8s.client import GROUP, VERSION, KubeClient
from elastic_operator.k8s.view import ClusterView, key_of
from elastic_operator.render.names import JOB_LABEL

LISTS = (
    ("Node", "/api/v1/nodes"),
    ("Pod", "/api/v1/pods"),
    ("TrainingJob", f"/apis/{GROUP}/{VERSION}/trainingjobs"),
    ("TuningSweep", f"/apis/{GROUP}/{VERSION}/tuningsweeps"),
)


async def initial_sync(client: KubeClient, view: ClusterView) -> None:
    for kind, path in LISTS:
        listing = await client.request("GET", path)
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
