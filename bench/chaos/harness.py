"""The chaos run: seeded TrainingJobs and TuningSweeps on kwok nodes, simulated trainers, a fault injector, and
invariant checkers, against the real operator process, API server, scheduler and kwok.

    result = run_chaos(cluster, namespace, ChaosConfig(seed=1, faults=200, jobs=20, sweeps=2), workdir)
    print(result.table())

Everything random comes from one `random.Random(seed)`: the workload, the order and targets of the faults and the
pauses between them. (Timing on a loaded machine is not seeded, so two runs with one seed inject the same kinds of
fault in the same order but may hit other pods.)
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.chaos.api import GROUP_PATH, Api
from bench.chaos.faults import FAULT_WEIGHTS, FaultInjector
from bench.chaos.invariants import NAMES, Invariants
from bench.chaos.trainers import SimulatedTrainers
from bench.chaos.workload import job_manifest, sweep_manifest
from hack.devcluster import DevCluster, FakeNode
from tests.support.operator import OperatorProcess

JSON = dict[str, Any]


@dataclass(frozen=True)
class ChaosConfig:
    seed: int = 1
    faults: int = 200
    jobs: int = 20  # stand-alone TrainingJobs (sweep trials come on top)
    sweeps: int = 2
    trials_per_sweep: int = 4
    nodes: int = 6
    gpus_per_node: int = 4
    pause_s: tuple[float, float] = (0.3, 2.0)  # between two faults
    steps: tuple[int, int] = (200, 500)  # a job's training target, in steps (10 steps/s while it runs)
    settle_timeout_s: float = 600.0  # after the last fault, every job and sweep must be terminal within this
    rss_bound_mib: float = 512.0


@dataclass
class ChaosResult:
    config: ChaosConfig
    faults: dict[str, int]
    node_returns: int
    invariants: dict[str, JSON]
    jobs: dict[str, int]  # phase -> count, trials included
    sweeps: dict[str, int]
    duration_s: float
    settle_s: float
    rss_mib: JSON
    reports: JSON
    fault_log: list[JSON] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c["failed"] == 0 for c in self.invariants.values())

    def to_json(self) -> JSON:
        out = asdict(self)
        out["passed"] = self.passed
        return out

    def table(self) -> str:
        lines = ["| fault | injected |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.faults.items()]
        lines += [f"| **total** | **{sum(self.faults.values())}** |", ""]
        lines += ["| invariant | checks passed | failed |", "|---|---|---|"]
        lines += [f"| {NAMES[k]} | {c['passed']} | {c['failed']} |" for k, c in self.invariants.items()]
        failures = [f"- {k}: {e}" for k, c in self.invariants.items() for e in c["examples"]]
        if failures:
            lines += ["", "First failures:", *failures]
        return "\n".join(lines)


def run_chaos(
    cluster: DevCluster, namespace: str, config: ChaosConfig, workdir: Path, log: Callable[[str], None] = print
) -> ChaosResult:
    rng = random.Random(config.seed)
    run_id = f"chaos-{uuid.uuid4().hex[:6]}"
    selector = f"elastic.training/chaos={run_id}"
    nodes = [
        FakeNode(f"{run_id}-n{i}", gpus=config.gpus_per_node, labels={"elastic.training/chaos": run_id})
        for i in range(config.nodes)
    ]
    for node in nodes:
        cluster.add_node(node)
    operator = OperatorProcess(
        cluster, workdir / "operator.log",
        ["--namespaces", namespace, "--node-selector", selector, "--shrink-deadline-s", "5"],
    )  # fmt: skip
    operator.start()
    api = Api(cluster)
    injector: FaultInjector | None = None
    trainers: SimulatedTrainers | None = None
    invariants: Invariants | None = None
    started = time.monotonic()
    try:
        injector = FaultInjector(rng, cluster, namespace, operator, nodes, on_flood=lambda o: None, log=log)
        trainers = SimulatedTrainers(cluster, namespace, operator, injector.absent_nodes)
        invariants = Invariants(
            cluster, namespace, operator, {n.name: n.gpus for n in nodes}, selector, trainers,
            injector.absent_nodes, config.rss_bound_mib,
        )  # fmt: skip
        injector.on_flood = invariants.record_flood
        trainers.start()
        invariants.start()

        # the workload: a third of the jobs and one sweep at once, the rest spread over the fault window
        submissions: list[tuple[int, JSON]] = []
        for i in range(config.jobs):
            at = 0 if i < config.jobs // 3 else rng.randrange(max(1, config.faults * 2 // 3))
            submissions.append((at, job_manifest(rng, f"job-{i:02d}", config.steps)))
        for i in range(config.sweeps):
            at = 0 if i == 0 else rng.randrange(max(1, config.faults // 2))
            submissions.append((at, sweep_manifest(rng, f"sweep-{i}", config.trials_per_sweep)))
        submissions.sort(key=lambda s: s[0])

        def submit_due(fault_index: int) -> None:
            while submissions and submissions[0][0] <= fault_index:
                _, manifest = submissions.pop(0)
                plural = "trainingjobs" if manifest["kind"] == "TrainingJob" else "tuningsweeps"
                path = f"{GROUP_PATH}/namespaces/{namespace}/{plural}"
                _retry(lambda: api.create(path, manifest))  # noqa: B023 - called before the loop moves on

        pending = list(FAULT_WEIGHTS)  # every kind once, early and in seeded order; then at random by weight
        rng.shuffle(pending)
        for index in range(config.faults):
            submit_due(index)
            time.sleep(rng.uniform(*config.pause_s))  # the pace of the faults (seeded), not synchronisation
            injector.return_due_nodes()
            kind = injector.inject(pending[0] if pending else None)
            if kind in pending:  # a kind without a target yet (no pod running) is tried again next time
                pending.remove(kind)
            if (index + 1) % 10 == 0 or index == 0:
                log(f"[{time.monotonic() - started:6.1f}s] fault {index + 1}/{config.faults}: {kind}")
        submit_due(config.faults)
        injector.return_due_nodes(all_now=True)
        fault_end = time.monotonic()
        log(f"[{fault_end - started:6.1f}s] faults done; waiting for every job and sweep to finish")
        jobs, sweeps = _settle(api, namespace, config.settle_timeout_s, injector)
        settle_s = time.monotonic() - fault_end
        trainers.stop()
        invariants.stop()
        invariants.final(jobs, sweeps)
        rss = invariants.rss_samples
        (workdir / "faults.json").write_text(json.dumps(injector.faults.entries, indent=1))
        (workdir / "final.json").write_text(json.dumps({"jobs": jobs, "sweeps": sweeps}, indent=1))
        return ChaosResult(
            config=config,
            faults=dict(injector.faults.counts),
            node_returns=injector.faults.node_returns,
            invariants={k: asdict(c) for k, c in invariants.checks.items()},
            jobs=_phases(jobs),
            sweeps=_phases(sweeps),
            duration_s=round(time.monotonic() - started, 1),
            settle_s=round(settle_s, 1),
            rss_mib={
                "max": round(max(rss), 1) if rss else None,
                "last": round(rss[-1], 1) if rss else None,
                "samples": len(rss),
                "bound": config.rss_bound_mib,
            },
            reports={"ok": trainers.seen.reports_ok, "failed": trainers.seen.reports_failed},
            fault_log=injector.faults.entries,
        )
    finally:
        for part in (trainers, invariants):
            if part is not None and part.thread.is_alive():
                part.stop()
        if injector is not None:
            injector.return_due_nodes(all_now=True)
            injector.close()
        operator.stop()
        api.close()
        for node in nodes:
            cluster.kubectl("delete", "node", node.name, "--ignore-not-found", "--wait=false", check=False)


def _retry(call: Callable[[], int], attempts: int = 30) -> None:
    """Create through a restarting API server: retry connection errors and 5xx; 409 means it exists."""
    for _ in range(attempts):
        try:
            code = call()
            if code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)  # the API server is restarting: back off
    raise RuntimeError("could not create an object through the API server")


def _phases(objs: list[JSON]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in objs:
        phase = (o.get("status") or {}).get("phase") or "None"
        out[phase] = out.get(phase, 0) + 1
    return out


def _settle(api: Api, namespace: str, timeout: float, injector: FaultInjector) -> tuple[list[JSON], list[JSON]]:
    """Wait (trainers still playing) until every job and sweep is terminal, or the timeout; return them."""
    deadline = time.monotonic() + timeout
    jobs: list[JSON] = []
    sweeps: list[JSON] = []
    while time.monotonic() < deadline:
        injector.return_due_nodes(all_now=True)
        try:
            jobs, sweeps = api.jobs(namespace), api.sweeps(namespace)
        except requests.RequestException:
            time.sleep(1.0)
            continue
        objs = [*jobs, *sweeps]
        if objs and all((o.get("status") or {}).get("phase") in ("Succeeded", "Failed") for o in objs):
            break
        time.sleep(2.0)  # polling the API server for a terminal state, with the deadline above
    for obj in jobs:
        obj.setdefault("kind", "TrainingJob")
    for obj in sweeps:
        obj.setdefault("kind", "TuningSweep")
    return jobs, sweeps


__all__ = ["FAULT_WEIGHTS", "ChaosConfig", "ChaosResult", "run_chaos"]
