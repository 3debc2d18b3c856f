"""Invariants, checked all through the run (a thread polls every couple of seconds; the pod watch checks every
event) and once at the end. Each keeps a count of checks passed and failed, with the first failures' messages.

Transient states are normal in a level-based controller (a pod created a moment before the status that names it
is written; a deleted job's pods waiting for the garbage collector): the orphan and duplicate checks flag only a
condition that persists for GRACE_S. A check never fails for a pod bound to a node that is gone: freeing those is
the pod garbage collector's job, not the operator's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.chaos.api import Api
from bench.chaos.faults import FloodOutcome
from bench.chaos.trainers import SimulatedTrainers
from hack.devcluster import DevCluster
from tests.support.capacity import CapacityWatcher
from tests.support.operator import OperatorProcess

JSON = dict[str, Any]
GRACE_S = 45.0
FLOOD_GOOD_REPORT_S = 5.0  # a good report answered within this while bad ones flood the endpoint

NAMES = {
    "capacity_pods": "capacity: bound pods within each node's GPUs (every pod event)",
    "capacity_plan": "capacity: placed + leaving workers within each node's GPUs (operator status)",
    "orphans": f"no orphaned pods (pods of no job, a finished job, or an untracked slot, for > {GRACE_S:.0f} s)",
    "duplicates": "no duplicated pods (two live pods for one job slot, two live rendezvous servers)",
    "generations": "directive generations never go backwards for a pod",
    "progress": "progress never below the last checkpoint; checkpoints never go back",
    "memory": "operator memory (RSS) within bound",
    "flood_refused": "bad-token reports all refused with 401",
    "flood_served": f"good report served during a flood (200 within {FLOOD_GOOD_REPORT_S:.0f} s)",
    "terminal": "every job and sweep reaches a terminal phase",
    "completed": "every job Succeeded once its training reached the target step (sweep trials: or stopped)",
}


@dataclass
class Check:
    passed: int = 0
    failed: int = 0
    examples: list[str] = field(default_factory=list)

    def ok(self, n: int = 1) -> None:
        self.passed += n

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.examples) < 10:
            self.examples.append(message)

    def fold(self, total: int, failures: list[str], folded: tuple[int, int]) -> tuple[int, int]:
        """Count what a running tally added since `folded` (its total and failure count when last folded): the new
        failures, and the other new checks as passed. Returns what is folded now."""
        new = failures[folded[1] :]
        self.ok(max(0, total - folded[0] - len(new)))
        for message in new:
            self.fail(message)
        return total, len(failures)


class Persistent:
    """Keys of a condition seen in consecutive polls; a key counts once it has lasted `grace_s`."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.first: dict[str, float] = {}
        self.reported: set[str] = set()

    def update(self, current: dict[str, str], now: float) -> list[str]:
        self.first = {k: self.first.get(k, now) for k in current}
        out = []
        for k, since in self.first.items():
            if now - since >= self.grace_s and k not in self.reported:
                self.reported.add(k)
                out.append(f"{current[k]} (for {now - since:.0f} s)")
        return out


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Invariants:
    def __init__(
        self,
        cluster: DevCluster,
        namespace: str,
        operator: OperatorProcess,
        capacity: dict[str, int],
        node_selector: str,
        trainers: SimulatedTrainers,
        absent_nodes: Callable[[], set[str]],
        rss_bound_mib: float,
        poll_s: float = 2.0,
    ) -> None:
        self.cluster, self.namespace, self.operator = cluster, namespace, operator
        self.capacity, self.node_selector = capacity, node_selector
        self.trainers, self.absent_nodes = trainers, absent_nodes
        self.rss_bound_mib, self.poll_s = rss_bound_mib, poll_s
        self.checks = {key: Check() for key in NAMES}
        self.api = Api(cluster)
        self.watcher = CapacityWatcher(cluster, namespace, capacity)
        self.orphans = Persistent(GRACE_S)
        self.duplicates = Persistent(GRACE_S)
        self.checkpoint_high: dict[str, int] = {}  # job uid -> highest lastCheckpointStep the status showed
        self.rss_samples: list[float] = []
        self._folded_generations = (0, 0)  # (checks, regressions) already counted
        self._folded_watch = (0, 0)  # (pod events, violations) already counted
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-invariants", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)
        self.watcher.stop()
        self._fold_watcher()
        self._fold_trainers()
        self.api.close()

    def _run(self) -> None:
        last_poll = 0.0
        while not self._stop.is_set():
            self.sample_memory()
            if time.monotonic() - last_poll >= self.poll_s:
                last_poll = time.monotonic()
                with contextlib.suppress(requests.RequestException):  # the API server restarts: next poll
                    self.poll()
            self._stop.wait(1.0)

    # -- continuous -----------------------------------------------------------------------------------------------

    def sample_memory(self) -> None:
        proc = self.operator.proc
        if proc is None or proc.poll() is not None:
            return
        rss = rss_mib(proc.pid)
        if rss is None:
            return
        self.rss_samples.append(rss)
        if rss <= self.rss_bound_mib:
            self.checks["memory"].ok()
        else:
            self.checks["memory"].fail(f"operator RSS {rss:.0f} MiB > {self.rss_bound_mib:.0f} MiB")

    def record_flood(self, outcome: FloodOutcome) -> None:
        refused = self.checks["flood_refused"]
        refused.ok(outcome.refused)
        for message in outcome.other:
            refused.fail(message)
        served = self.checks["flood_served"]
        if outcome.good_status == 200 and outcome.good_latency_s <= FLOOD_GOOD_REPORT_S:
            served.ok()
        else:
            served.fail(f"good report got {outcome.good_status} after {outcome.good_latency_s:.1f} s")

    def _fold_watcher(self) -> None:
        events, violations = self.watcher.snapshot()
        self._folded_watch = self.checks["capacity_pods"].fold(events, list(violations), self._folded_watch)

    def _fold_trainers(self) -> None:
        seen = self.trainers.seen
        self._folded_generations = self.checks["generations"].fold(
            seen.generation_checks, list(seen.generation_regressions), self._folded_generations
        )

    def poll(self) -> None:
        jobs = self.api.jobs(self.namespace)  # jobs first, then pods: a pod seen after is one that existed before
        pods = self.api.pods(self.namespace)
        nodes = {n["metadata"]["name"] for n in self.api.items("/api/v1/nodes", labelSelector=self.node_selector)}
        now = time.monotonic()
        self._fold_watcher()
        self._fold_trainers()
        by_name = {j["metadata"]["name"]: j for j in jobs}
        live_pods = [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        pod_names = {p["metadata"]["name"] for p in pods}
        self._check_plan_capacity(jobs, pod_names, nodes)
        self._check_orphans_and_duplicates(by_name, live_pods, nodes, now)
        self._check_progress(jobs)

    def _check_plan_capacity(self, jobs: list[JSON], pod_names: set[str], nodes: set[str]) -> None:
        used: dict[str, int] = {}
        for job in jobs:
            ctl = (job.get("status") or {}).get("controller") or {}
            name = job["metadata"]["name"]
            gpus = int(job["spec"]["template"]["resources"]["limits"].get("nvidia.com/gpu", 0))
            for slot in ctl.get("placement") or []:
                used[slot["node"]] = used.get(slot["node"], 0) + gpus
            node_of = {s["slot"]: s["node"] for s in ctl.get("placement") or []}
            for leaving in ctl.get("leaving") or []:
                pod = f"{name}-w{leaving['slot']}"
                node = node_of.get(leaving["slot"])
                if pod in pod_names and node:
                    used[node] = used.get(node, 0) + gpus
        over = [f"{n}: {g} GPUs placed > {self.capacity[n]}" for n, g in used.items()
                if n in nodes and g > self.capacity.get(n, 0)]  # fmt: skip
        check = self.checks["capacity_plan"]
        if over:
            check.fail("; ".join(over))
        else:
            check.ok()

    def _check_orphans_and_duplicates(
        self, jobs: dict[str, JSON], live: list[JSON], nodes: set[str], now: float
    ) -> None:
        orphans: dict[str, str] = {}
        per_slot: dict[tuple[str, str], list[str]] = {}
        rendezvous: dict[str, list[str]] = {}
        for pod in live:
            meta = pod["metadata"]
            labels = meta.get("labels") or {}
            name, job_name = meta["name"], labels.get("elastic.training/job-name", "")
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in nodes:
                continue  # its node is gone: the pod GC frees it
            job = jobs.get(job_name)
            status = (job or {}).get("status") or {}
            ctl = status.get("controller") or {}
            role = labels.get("elastic.training/role")
            if role == "rendezvous":
                rendezvous.setdefault(job_name, []).append(name)
            else:
                per_slot.setdefault((job_name, labels.get("elastic.training/slot", "")), []).append(name)
            if job is None:
                orphans[name] = f"pod {name}: its job {job_name} does not exist"
            elif status.get("phase") in ("Succeeded", "Failed"):
                orphans[name] = f"pod {name}: its job is {status['phase']}"
            elif role == "worker":
                slot = int(labels.get("elastic.training/slot", "-1"))
                tracked = {s["slot"] for s in [*(ctl.get("placement") or []), *(ctl.get("leaving") or [])]}
                if slot not in tracked:
                    orphans[name] = f"pod {name}: slot {slot} is neither placed nor leaving"
            elif role == "rendezvous" and name != ctl.get("rendezvousPod"):
                orphans[name] = f"pod {name}: not the job's rendezvous pod ({ctl.get('rendezvousPod')})"
        check = self.checks["orphans"]
        found = self.orphans.update(orphans, now)
        for message in found:
            check.fail(message)
        if not found:
            check.ok()
        dups = {f"{j}/slot{s}": f"job {j} slot {s}: {names}" for (j, s), names in per_slot.items() if len(names) > 1}
        dups |= {f"{j}/rdzv": f"job {j}: rendezvous pods {names}" for j, names in rendezvous.items() if len(names) > 1}
        check = self.checks["duplicates"]
        found = self.duplicates.update(dups, now)
        for message in found:
            check.fail(message)
        if not found:
            check.ok()

    def _check_progress(self, jobs: list[JSON]) -> None:
        check = self.checks["progress"]
        for job in jobs:
            progress = (job.get("status") or {}).get("progress")
            if not progress:
                continue
            uid, name = job["metadata"]["uid"], job["metadata"]["name"]
            high = self.checkpoint_high.get(uid, 0)
            ckpt = int(progress.get("lastCheckpointStep") or 0)
            step = int(progress.get("step") or 0)
            if ckpt < high:
                check.fail(f"{name}: lastCheckpointStep {ckpt} after {high}")
            elif step < high:
                check.fail(f"{name}: step {step} below the last checkpoint {high}")
            else:
                check.ok()
            self.checkpoint_high[uid] = max(high, ckpt)

    # -- at the end -----------------------------------------------------------------------------------------------

    def final(self, jobs: list[JSON], sweeps: list[JSON]) -> None:
        terminal, completed = self.checks["terminal"], self.checks["completed"]
        for obj in [*jobs, *sweeps]:
            kind, name = obj["kind"], obj["metadata"]["name"]
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                terminal.ok()
            else:
                terminal.fail(f"{kind} {name} is {phase}")
        with self.trainers.lock:
            trained = {uid: sim.finished for uid, sim in self.trainers.jobs.items()}
            history = {uid: sim.history[-8:] for uid, sim in self.trainers.jobs.items()}
        for job in jobs:
            status = job.get("status") or {}
            name = job["metadata"]["name"]
            stopped = str(status.get("message") or "").startswith("stopped:")
            finished = trained.get(job["metadata"]["uid"], False)  # the simulated training reached its target
            if status.get("phase") == "Succeeded" and (stopped or finished):
                completed.ok()
            else:
                step = (status.get("progress") or {}).get("step")
                completed.fail(f"{name}: {status.get('phase')} at status step {step}, trained to the target: "
                               f"{finished} ({status.get('message')}); its pods' last directives: "
                               f"{history.get(job['metadata']['uid'], [])}")  # fmt: skip
        for sweep in sweeps:
            if (sweep.get("status") or {}).get("phase") == "Succeeded":
                completed.ok()
            else:
                completed.fail(f"sweep {sweep['metadata']['name']}: {(sweep.get('status') or {}).get('phase')}")

    @property
    def all_passed(self) -> bool:
        return all(c.failed == 0 for c in self.checks.values())
