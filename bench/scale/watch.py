"""What the bench sees of the run, from the API server's watch streams (never from the operator's own words).

Two watches (pods and TrainingJobs of the bench namespace) record, per job, when the bench first saw each step:
submitted, admitted (phase left Queued), its worker pods created, its workers finished, Succeeded. Times are this
process's monotonic clock at the moment the event arrived, so they share one clock with the submission times.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from elastic_operator.render.names import JOB_LABEL, ROLE_LABEL, WORKER
from hack.devcluster import DevCluster

JSON = dict[str, Any]
GROUP_PATH = "/apis/elastic.training/v1alpha1"


@dataclass
class JobTimes:
    submitted: float | None = None
    admitted: float | None = None  # status.phase left Queued
    succeeded: float | None = None
    worker_created: dict[str, float] = field(default_factory=dict)  # pod name -> first seen
    worker_done: dict[str, float] = field(default_factory=dict)  # pod name -> first seen Succeeded/Failed
    worker_running: dict[str, float] = field(default_factory=dict)  # pod name -> first seen Running
    phase: str = ""


class Session:
    """One kept-alive HTTPS session with the dev cluster's admin token."""

    def __init__(self, cluster: DevCluster) -> None:
        self.base = cluster.server
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Bearer {cluster.token}"
        self.http.verify = str(Path(cluster.state.dir) / "pki" / "ca.crt")
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
        self.http.mount("https://", adapter)

    def post(self, path: str, body: JSON) -> int:
        return self.http.post(self.base + path, json=body, timeout=60).status_code

    def text(self, path: str) -> str:
        resp = self.http.get(self.base + path, timeout=60)
        resp.raise_for_status()
        return resp.text

    def get(self, path: str, **params: str) -> JSON:
        resp = self.http.get(self.base + path, params=params, timeout=60)
        resp.raise_for_status()
        out: JSON = resp.json()
        return out


class Recorder:
    """Watches pods and TrainingJobs of one namespace, and the nodes, in three threads; `jobs` holds what was seen,
    by job name; `nodes_not_ready` counts nodes leaving Ready (the simulated kubelets must stay healthy: a node
    going NotReady takes its GPUs out of the plan, and the bench would measure the cluster, not the operator)."""

    def __init__(self, cluster: DevCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.jobs: dict[str, JobTimes] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.events = 0
        self.nodes_not_ready = 0
        self._node_ready: dict[str, bool] = {}
        self._threads = [
            threading.Thread(target=self._watch, args=("/api/v1/nodes", self._node), daemon=True),
            threading.Thread(target=self._watch, args=(f"/api/v1/namespaces/{namespace}/pods", self._pod), daemon=True),
            threading.Thread(
                target=self._watch, args=(f"{GROUP_PATH}/namespaces/{namespace}/trainingjobs", self._job), daemon=True
            ),
        ]
        self._ready = threading.Barrier(len(self._threads) + 1)

    def start(self) -> None:
        for t in self._threads:
            t.start()
        self._ready.wait(timeout=60)  # every watch is open: nothing the bench submits later can be missed

    def job(self, name: str) -> JobTimes:
        with self.lock:
            return self.jobs.setdefault(name, JobTimes())

    def submitted(self, name: str, at: float) -> None:
        with self.lock:
            self.jobs.setdefault(name, JobTimes()).submitted = at

    def snapshot(self) -> dict[str, JobTimes]:
        with self.lock:
            return dict(self.jobs)

    def _watch(self, path: str, fold: Any) -> None:
        session = Session(self.cluster)
        version = session.get(path)["metadata"]["resourceVersion"]
        first = True
        while not self.stop.is_set():
            try:
                params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "3600"}
                with session.http.get(session.base + path, params=params, stream=True, timeout=(10, 3700)) as resp:
                    resp.raise_for_status()
                    if first:
                        first = False
                        self._ready.wait(timeout=60)
                    for line in resp.iter_lines():
                        if self.stop.is_set():
                            return
                        if not line:
                            continue
                        now = time.monotonic()
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":  # resourceVersion too old: relist from now
                            version = session.get(path)["metadata"]["resourceVersion"]
                            break
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        with self.lock:
                            self.events += 1
                            fold(event.get("type"), obj, now)
            except requests.RequestException:
                if self.stop.is_set():
                    return
                time.sleep(0.5)  # reconnect backoff, not synchronisation

    def _pod(self, kind: str, pod: JSON, now: float) -> None:
        labels = pod.get("metadata", {}).get("labels") or {}
        job = labels.get(JOB_LABEL)
        if not job or labels.get(ROLE_LABEL) != WORKER:
            return
        times = self.jobs.setdefault(job, JobTimes())
        name = pod["metadata"]["name"]
        times.worker_created.setdefault(name, now)
        if (pod.get("status") or {}).get("phase") == "Running":
            times.worker_running.setdefault(name, now)
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or kind == "DELETED":
            times.worker_done.setdefault(name, now)

    def _node(self, kind: str, node: JSON, now: float) -> None:
        name = node.get("metadata", {}).get("name", "")
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = kind != "DELETED" and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if self._node_ready.get(name, True) and not ready:
            self.nodes_not_ready += 1
        self._node_ready[name] = ready

    def _job(self, kind: str, job: JSON, now: float) -> None:
        times = self.jobs.setdefault(job["metadata"]["name"], JobTimes())
        phase = (job.get("status") or {}).get("phase") or "Queued"
        times.phase = phase
        if phase != "Queued" and times.admitted is None:
            times.admitted = now
        if phase == "Succeeded" and times.succeeded is None:
            times.succeeded = now
