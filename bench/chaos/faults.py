"""The faults: each picks a seeded random target, does one disruptive thing, and says what it did.

| kind | what |
|---|---|
| operator_kill | SIGKILL the operator process, start a new one (as a crashed pod's replacement would) |
| worker_pod_delete | delete a running worker pod (eviction, a user's `kubectl delete`) |
| rendezvous_pod_delete | delete a job's rendezvous pod |
| node_remove_return | delete a kwok node (machine gone); it comes back with the same name 3-15 s later |
| apiserver_restart | stop kube-apiserver, start it again (every watch breaks) |
| conflicting_status_write | a second writer puts back a job's status as read a moment earlier (a lagging replica) |
| report_flood | 200 reports with bad or missing tokens from 8 threads, while a good report must still be served |
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.chaos.api import GROUP_PATH, Api
from hack.devcluster import DevCluster, FakeNode
from tests.support.operator import OperatorProcess

JSON = dict[str, Any]

FAULT_WEIGHTS: dict[str, int] = {
    "operator_kill": 2,
    "worker_pod_delete": 4,
    "rendezvous_pod_delete": 2,
    "node_remove_return": 2,
    "apiserver_restart": 1,
    "conflicting_status_write": 3,
    "report_flood": 2,
}
FLOOD_REQUESTS = 200
FLOOD_THREADS = 8


@dataclass
class FloodOutcome:
    refused: int  # answered 401
    other: list[str]  # anything else (a bad token must never be accepted)
    good_status: int | None  # the good report's answer during the flood
    good_latency_s: float


@dataclass
class FaultLog:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_WEIGHTS, 0))
    entries: list[JSON] = field(default_factory=list)
    node_returns: int = 0

    def record(self, kind: str, target: str, t0: float, **extra: Any) -> None:
        self.counts[kind] += 1
        self.entries.append({"kind": kind, "target": target, "t": round(time.monotonic() - t0, 2), **extra})


class FaultInjector:
    def __init__(
        self,
        rng: random.Random,
        cluster: DevCluster,
        namespace: str,
        operator: OperatorProcess,
        nodes: list[FakeNode],
        on_flood: Callable[[FloodOutcome], None],
        log: Callable[[str], None] = print,
    ) -> None:
        self.rng, self.cluster, self.namespace, self.operator = rng, cluster, namespace, operator
        self.nodes = {n.name: n for n in nodes}
        self.on_flood = on_flood
        self.log = log
        self.api = Api(cluster)
        self.faults = FaultLog()
        self.t0 = time.monotonic()
        self._absent: dict[str, float] = {}  # removed node -> when it comes back (monotonic)
        self._lock = threading.Lock()

    def absent_nodes(self) -> set[str]:
        with self._lock:
            return set(self._absent)

    # -- driving ------------------------------------------------------------------------------------------------------

    def inject(self, preferred: str | None = None) -> str:
        """Inject one fault: of kind `preferred`, else of a seeded random kind (another kind if the first has no
        target now)."""
        kinds, weights = list(FAULT_WEIGHTS), list(FAULT_WEIGHTS.values())
        for attempt in range(20):
            kind = preferred if preferred and attempt == 0 else self.rng.choices(kinds, weights)[0]
            try:
                if getattr(self, kind)():
                    return kind
            except (requests.RequestException, OSError, TimeoutError) as exc:
                self.log(f"  {kind} could not be injected now: {exc}")
        raise RuntimeError("no fault could be injected 20 times in a row")

    def return_due_nodes(self, *, all_now: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            due = [n for n, at in self._absent.items() if all_now or at <= now]
        for name in due:
            try:
                self.cluster.add_node(self.nodes[name])
            except Exception as exc:  # the old Node object may still be going away: next time
                self.log(f"  node {name} not back yet: {exc}")
                continue
            with self._lock:
                del self._absent[name]
            self.faults.node_returns += 1

    def close(self) -> None:
        self.api.close()

    # -- targets --------------------------------------------------------------------------------------------------

    def _live_pods(self, role: str) -> list[JSON]:
        absent = self.absent_nodes()
        return sorted(
            (
                p
                for p in self.api.pods(self.namespace)
                if (p["metadata"].get("labels") or {}).get("elastic.training/role") == role
                and not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") == "Running"
                and (p.get("spec") or {}).get("nodeName") not in absent
            ),
            key=lambda p: str(p["metadata"]["name"]),
        )

    # -- the faults (each returns False when it has no target now) ----------------------------------------------------

    def operator_kill(self) -> bool:
        self.operator.kill()
        self.operator.start(timeout=120)
        self.faults.record("operator_kill", f"pid {self.operator.proc.pid if self.operator.proc else '?'}", self.t0)
        return True

    def _delete_pod(self, kind: str, role: str) -> bool:
        pods = self._live_pods(role)
        if not pods:
            return False
        name = self.rng.choice(pods)["metadata"]["name"]
        self.api.delete(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        self.faults.record(kind, name, self.t0)
        return True

    def worker_pod_delete(self) -> bool:
        return self._delete_pod("worker_pod_delete", "worker")

    def rendezvous_pod_delete(self) -> bool:
        return self._delete_pod("rendezvous_pod_delete", "rendezvous")

    def node_remove_return(self) -> bool:
        with self._lock:
            present = sorted(set(self.nodes) - set(self._absent))
            if len(present) <= len(self.nodes) // 2:
                return False  # keep at least half the capacity: the run must still make progress
            name = self.rng.choice(present)
            self._absent[name] = time.monotonic() + self.rng.uniform(3.0, 15.0)
        self.cluster.remove_node(name)
        self.faults.record("node_remove_return", name, self.t0)
        return True

    def apiserver_restart(self) -> bool:
        took = self.cluster.restart_apiserver()
        self.faults.record("apiserver_restart", "kube-apiserver", self.t0, ready_after_s=round(took, 2))
        return True

    def conflicting_status_write(self) -> bool:
        jobs = [
            j
            for j in self.api.jobs(self.namespace)
            if (j.get("status") or {}).get("phase") not in (None, "Succeeded", "Failed")
        ]
        if not jobs:
            return False
        job = self.rng.choice(sorted(jobs, key=lambda j: str(j["metadata"]["name"])))
        name = job["metadata"]["name"]
        stale = job["status"]
        time.sleep(self.rng.uniform(0.2, 1.5))  # the operator may move on meanwhile: this writer lags behind
        code = self.api.merge_patch(f"{GROUP_PATH}/namespaces/{self.namespace}/trainingjobs/{name}/status",
                                    {"status": stale})  # fmt: skip
        self.faults.record("conflicting_status_write", name, self.t0, http=code,
                           generation=stale.get("rescaleGeneration"))  # fmt: skip
        return True

    def report_flood(self) -> bool:
        jobs = self.api.jobs(self.namespace)
        live = [j for j in jobs if (j.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        names = [j["metadata"]["name"] for j in jobs] or ["nobody"]
        refused, other = 0, []
        lock = threading.Lock()
        url = f"http://127.0.0.1:{self.operator.report_port}/v1/namespaces/{self.namespace}/trainingjobs"

        def bad(i: int) -> None:
            nonlocal refused
            name = names[i % len(names)]
            body = json.dumps({"namespace": self.namespace, "job": name, "pod": f"{name}-w0", "state": "running",
                               "step": 10**6}).encode()  # fmt: skip
            headers = {"Content-Type": "application/json"}
            if i % 4:  # most carry a token, forged or of the wrong length; some carry none
                headers["Authorization"] = f"Bearer {secrets.token_hex(8 + i % 40)}"
            req = urllib.request.Request(f"{url}/{name}/reports", data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    outcome = f"{resp.status} for a bad token"
            except urllib.error.HTTPError as exc:
                outcome = "" if exc.code == 401 else f"{exc.code} for a bad token"
            except OSError as exc:
                outcome = f"no answer: {exc}"
            with lock:
                if outcome:
                    other.append(outcome)
                else:
                    refused += 1

        def sender(first: int) -> None:
            for i in range(first, FLOOD_REQUESTS, FLOOD_THREADS):
                bad(i)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(FLOOD_THREADS)]
        for t in threads:
            t.start()
        good_status: int | None = None
        started = time.monotonic()
        if live:  # a good report in the middle of the flood: it must still be served
            job = self.rng.choice(live)
            try:
                good_status, _ = self.operator.report(self.namespace, job["metadata"]["name"], job["metadata"]["uid"],
                                                      f"{job['metadata']['name']}-probe", state="waiting")  # fmt: skip
            except OSError:
                good_status = None
        latency = time.monotonic() - started
        for t in threads:
            t.join()
        self.on_flood(FloodOutcome(refused, other[:5], good_status if live else 200, latency))
        self.faults.record("report_flood", f"{FLOOD_REQUESTS} bad reports", self.t0, refused=refused)
        return True
