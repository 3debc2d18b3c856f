"""The operator's in-memory view of the cluster, fed by watch events (kopf `on.event` handlers).

Nothing here lists the API server: every planning round reads this view, which the watches keep current. The
view stores each object's raw JSON as last seen; `changed` wakes the planner after a relevant change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elastic_operator.render.names import JOB_LABEL, SWEEP_LABEL

JSON = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta["name"])


_POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp", "creationTimestamp")


def slim_pod(pod: JSON) -> JSON:
    """What the operator reads of a pod (k8s/facts.py, snapshot.py, the directive): identity, labels, node, the
    containers' resources, phase, IP, exit codes and disruption. The rest (env, command, volumes, security
    contexts, annotations, most of the status) was most of the operator's memory at 1,000 nodes and 4,000 pods
    (bench/scale), finished pods kept for their logs included."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}

    def resources(containers: Any) -> list[JSON]:
        return [{"resources": c.get("resources") or {}} for c in containers or [] if isinstance(c, dict)]

    out: JSON = {
        "metadata": {k: meta[k] for k in _POD_METADATA if k in meta},
        "spec": {"nodeName": spec.get("nodeName"), "containers": resources(spec.get("containers"))},
        "status": {k: status[k] for k in ("phase", "podIP", "reason") if k in status},
    }
    if spec.get("initContainers"):
        out["spec"]["initContainers"] = resources(spec["initContainers"])
    if status.get("conditions"):
        out["status"]["conditions"] = [
            {"type": c.get("type"), "status": c.get("status")} for c in status["conditions"] if isinstance(c, dict)
        ]
    if status.get("containerStatuses"):
        out["status"]["containerStatuses"] = [
            {"state": {"terminated": {"exitCode": (cs.get("state") or {})["terminated"].get("exitCode", 0)}}}
            if isinstance((cs.get("state") or {}).get("terminated"), dict)
            else {"state": {}}
            for cs in status["containerStatuses"]
            if isinstance(cs, dict)
        ]
    return out


@dataclass
class ClusterView:
    """Nodes, pods and our custom objects, as the watches last reported them."""

    nodes: dict[str, JSON] = field(default_factory=dict)
    pods: dict[Key, JSON] = field(default_factory=dict)
    jobs: dict[Key, JSON] = field(default_factory=dict)
    sweeps: dict[Key, JSON] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    revision: int = 0
    node_set_revision: int = 0  # moves when a node comes or goes (what a job's reconcile reads of the nodes)

    def _touch(self, kind: str = "", *, came_or_went: bool = False) -> None:
        self.revision += 1
        if kind == "Node" and came_or_went:
            self.node_set_revision += 1
        self.changed.set()

    def observe(self, kind: str, event_type: str | None, obj: JSON) -> None:
        """Fold one watch event in. `event_type` is ADDED/MODIFIED/DELETED, or None for the initial listing.

        managedFields are dropped: nothing reads them, and they are a large part of every object (bench/scale: the
        view of 1,000 nodes and 6,000 pods is most of the operator's memory)."""
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        store: dict[Any, JSON]
        if kind == "Node":
            store, key = self.nodes, obj["metadata"]["name"]
        elif kind == "Pod":
            obj = slim_pod(obj)
            store, key = self.pods, key_of(obj)
        elif kind == "TrainingJob":
            store, key = self.jobs, key_of(obj)
        elif kind == "TuningSweep":
            store, key = self.sweeps, key_of(obj)
        else:
            raise ValueError(f"unexpected kind {kind}")
        if event_type == "DELETED":
            if store.pop(key, None) is not None:
                self._touch(kind, came_or_went=True)
            return
        previous = store.get(key)
        if previous is not None and _older(obj, previous):
            return  # the controller already folded in its own newer write (see Controller._reconcile)
        store[key] = obj
        if previous is None or _meaningful_change(kind, previous, obj):
            self._touch(kind, came_or_went=previous is None)

    def replace(self, kind: str, items: list[JSON], namespace: str | None = None) -> None:
        """Fold a complete listing in: every item as seen now, and whatever the view held in that scope (one
        namespace, or all when None) that the listing lacks is gone (its DELETED event was missed)."""
        store = self._store(kind)
        listed: set[Any] = set()
        for obj in items:
            listed.add(obj["metadata"]["name"] if kind == "Node" else key_of(obj))
            self.observe(kind, None, obj)
        for key in [k for k in store if k not in listed]:
            if namespace is None or (isinstance(key, tuple) and key[0] == namespace):
                del store[key]
                self._touch(kind, came_or_went=True)

    def _store(self, kind: str) -> dict[Any, JSON]:
        stores: dict[str, dict[Any, JSON]] = {
            "Node": self.nodes, "Pod": self.pods, "TrainingJob": self.jobs, "TuningSweep": self.sweeps
        }  # fmt: skip
        if kind not in stores:
            raise ValueError(f"unexpected kind {kind}")
        return stores[kind]

    def job_pods(self, namespace: str, name: str) -> list[JSON]:
        return [
            p
            for (ns, _), p in self.pods.items()
            if ns == namespace and p.get("metadata", {}).get("labels", {}).get(JOB_LABEL) == name
        ]

    def pods_by_job(self) -> dict[Key, list[JSON]]:
        out: dict[Key, list[JSON]] = {}
        for (ns, _), p in self.pods.items():
            job = p.get("metadata", {}).get("labels", {}).get(JOB_LABEL)
            if job:
                out.setdefault((ns, job), []).append(p)
        return out

    def trial_jobs(self, namespace: str, sweep: str) -> Iterable[JSON]:
        for (ns, _), job in self.jobs.items():
            if ns == namespace and job.get("metadata", {}).get("labels", {}).get(SWEEP_LABEL) == sweep:
                yield job


def _older(new: JSON, old: JSON) -> bool:
    """Whether `new` is an older version than `old`. resourceVersions are opaque to clients in general; the API
    server hands out etcd revisions (integers), and only those are compared: anything else counts as newer."""
    a = str(new.get("metadata", {}).get("resourceVersion", ""))
    b = str(old.get("metadata", {}).get("resourceVersion", ""))
    return a.isdigit() and b.isdigit() and int(a) < int(b)


def _meaningful_change(kind: str, old: JSON, new: JSON) -> bool:
    """Heartbeat-only updates of nodes (lastHeartbeatTime) must not wake the planner every few seconds."""
    if kind != "Node":
        return True
    o, n = old.get("status", {}), new.get("status", {})
    return (
        old.get("spec") != new.get("spec")
        or old.get("metadata", {}).get("labels") != new.get("metadata", {}).get("labels")
        or o.get("allocatable") != n.get("allocatable")
        or _ready(o) != _ready(n)
        or old.get("metadata", {}).get("deletionTimestamp") != new.get("metadata", {}).get("deletionTimestamp")
    )


def _ready(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
