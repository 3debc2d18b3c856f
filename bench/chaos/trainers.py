"""Simulated trainers: one thread plays every live worker pod's launcher through the operator's report endpoint,
as elastic_trainer's launcher would (report, act on the directive, report again on a change).

Per job, training is one shared counter (all ranks agree on the step). It advances with wall time while at least
one pod runs the job's current generation; a checkpoint is written every CHECKPOINT_EVERY steps and when a pod is
asked to stop cleanly (`checkpoint-and-wait`, `exit`, or a new generation while every old member still lives).
Every new generation resumes from the last checkpoint, so work since then is redone, as with real torch. When a
job reaches its target step count, its running members report `succeeded` and kwok ends their pods with exit 0.

What the trainers observe feeds an invariant: directive generations never go backwards for a pod (a reused
generation would reuse a rendezvous id).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from bench.chaos.api import Api
from bench.chaos.workload import STEPS_PER_EPOCH, target_steps, trial_loss
from hack.devcluster import DevCluster
from tests.support.operator import OperatorProcess

CHECKPOINT_EVERY = 50
STEPS_PER_S = 10.0
JSON = dict[str, Any]


@dataclass
class PodSim:
    state: str = "starting"
    generation: int = 0
    max_directive_generation: int = 0
    exit_requested: bool = False  # asked kwok to end the pod (exit code 0)
    directive: tuple[str, int] = ("", 0)  # the latest (action, generation) it was given


@dataclass
class JobSim:
    name: str
    uid: str
    target: int
    step: float = 0.0
    checkpoint: int = 0
    generation: int = 0  # the generation the job trains in
    last_tick: float | None = None
    resumes: int = 0
    pods: dict[str, PodSim] = field(default_factory=dict)
    finished: bool = False
    history: list[str] = field(default_factory=list)  # the latest directive changes, for a failure's message

    def note(self, entry: str) -> None:
        self.history = [*self.history[-19:], entry]


@dataclass
class Observation:
    """Invariant-relevant facts the trainers saw (counted by the invariant checker)."""

    generation_checks: int = 0
    generation_regressions: list[str] = field(default_factory=list)
    reports_ok: int = 0
    reports_failed: int = 0


class SimulatedTrainers:
    def __init__(
        self,
        cluster: DevCluster,
        namespace: str,
        operator: OperatorProcess,
        absent_nodes: Callable[[], set[str]],
        interval_s: float = 0.5,
    ) -> None:
        self.cluster, self.namespace, self.operator = cluster, namespace, operator
        self.absent_nodes = absent_nodes  # nodes removed by the fault injector: their pods run nothing
        self.interval_s = interval_s
        self.api = Api(cluster)
        self.jobs: dict[str, JobSim] = {}  # by job uid
        self.seen = Observation()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-trainers", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)
        self.api.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(requests.RequestException):  # the API server restarts: next tick
                self.tick()
            self._stop.wait(self.interval_s)

    # -- one pass over every job ------------------------------------------------------------------------------------

    def tick(self) -> None:
        jobs = self.api.jobs(self.namespace)
        pods = self.api.pods(self.namespace)
        absent = self.absent_nodes()
        by_job: dict[str, list[JSON]] = {}
        for p in pods:
            meta, status = p["metadata"], p.get("status") or {}
            labels = meta.get("labels") or {}
            if labels.get("elastic.training/role") != "worker" or meta.get("deletionTimestamp"):
                continue
            if status.get("phase") != "Running" or (p.get("spec") or {}).get("nodeName") in absent:
                continue
            by_job.setdefault(labels.get("elastic.training/job-name", ""), []).append(p)
        for job in jobs:
            phase = (job.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            uid = job["metadata"]["uid"]
            with self.lock:
                sim = self.jobs.setdefault(uid, JobSim(job["metadata"]["name"], uid, target_steps(job)))
            self._play(job, sim, by_job.get(sim.name, []))

    def _report(self, job: JSON, sim: JobSim, pod: str, ps: PodSim, state: str, generation: int) -> JSON | None:
        epoch = int(sim.step) // STEPS_PER_EPOCH
        try:
            code, body = self.operator.report(
                self.namespace, sim.name, sim.uid, pod, generation=generation, state=state, step=int(sim.step),
                epoch=epoch, samples_per_s=100.0, metrics={"loss": trial_loss(job, epoch)},
                last_checkpoint_step=sim.checkpoint or None,
            )  # fmt: skip
        except OSError:  # the operator is down (killed, restarting): a real launcher retries later too
            self.seen.reports_failed += 1
            return None
        if code != 200:
            self.seen.reports_failed += 1
            return None
        self.seen.reports_ok += 1
        ps.state, ps.generation = state, generation
        self.seen.generation_checks += 1
        if body["generation"] < ps.max_directive_generation:
            self.seen.generation_regressions.append(
                f"{sim.name}/{pod}: directive generation {body['generation']} after {ps.max_directive_generation}"
            )
        ps.max_directive_generation = max(ps.max_directive_generation, int(body["generation"]))
        return body

    def _exit_pod(self, pod: str, ps: PodSim) -> None:
        if ps.exit_requested:
            return
        result = self.cluster.kubectl("annotate", "--overwrite", "pod", pod, "-n", self.namespace,
                                      "kwok.elastic.training/exit-code=0", check=False)  # fmt: skip
        ps.exit_requested = result.returncode == 0

    def _play(self, job: JSON, sim: JobSim, pods: list[JSON]) -> None:
        now = time.monotonic()
        live = {p["metadata"]["name"] for p in pods}
        old_members = {n for n, ps in sim.pods.items() if ps.state == "running" and ps.generation == sim.generation}
        intact = old_members <= live  # every rank of the running generation still lives: a clean stop is possible
        for pod in sorted(live):
            ps = sim.pods.setdefault(pod, PodSim())
            if ps.state in ("exited", "succeeded"):
                self._exit_pod(pod, ps)
                continue
            directive = self._report(job, sim, pod, ps, ps.state, ps.generation)
            if directive is None:
                continue
            action, generation = directive["action"], int(directive["generation"])
            if ps.directive != (action, generation):
                ps.directive = (action, generation)
                sim.note(f"{pod}: {action} g{generation} at step {int(sim.step)} (was {ps.state} g{ps.generation})")
            was_running = ps.state == "running" and ps.generation == sim.generation
            if action == "exit":
                if was_running and intact:
                    sim.checkpoint = max(sim.checkpoint, int(sim.step))
                if self._report(job, sim, pod, ps, "exited", generation) is not None:
                    self._exit_pod(pod, ps)
            elif action == "checkpoint-and-wait":
                if was_running and intact:
                    sim.checkpoint = max(sim.checkpoint, int(sim.step))
                if ps.state != "waiting":
                    self._report(job, sim, pod, ps, "waiting", generation)
            elif action == "run" and not (ps.state == "running" and ps.generation == generation):
                if generation != sim.generation:  # a new generation: every rank restarts from the checkpoint
                    if was_running and intact:
                        sim.checkpoint = max(sim.checkpoint, int(sim.step))
                    sim.generation, sim.step, sim.resumes = generation, float(sim.checkpoint), sim.resumes + 1
                    sim.last_tick = now
                self._report(job, sim, pod, ps, "running", generation)
        running = [
            n for n in sorted(live) if sim.pods[n].state == "running" and sim.pods[n].generation == sim.generation
        ]
        if running and sim.last_tick is not None:
            before = int(sim.step)
            sim.step += STEPS_PER_S * min(2.0, now - sim.last_tick)  # a stalled harness does not leap ahead
            if int(sim.step) // CHECKPOINT_EVERY > before // CHECKPOINT_EVERY:
                sim.checkpoint = int(sim.step) // CHECKPOINT_EVERY * CHECKPOINT_EVERY
            if sim.step >= sim.target:
                sim.step = float(sim.target)
                sim.checkpoint = sim.target
                for pod in running:
                    if self._report(job, sim, pod, sim.pods[pod], "succeeded", sim.generation) is not None:
                        self._exit_pod(pod, sim.pods[pod])
                sim.finished = True
        sim.last_tick = now
