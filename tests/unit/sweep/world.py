"""A tiny in-memory world for `sweep.decide`: it applies plans the way k8s/sweeps.py does (status first, then
creates, stop annotations) and plays every trial's TrainingJob: one resource unit (epoch) per round, the
objective's value reported as the metric, Succeeded at the last epoch or `stopped: <reason>` when asked to stop."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from elastic_operator.api.tuningsweep import SWEEP_LABEL, TRIAL_LABEL, TuningSweep
from elastic_operator.api.validation import validate_tuningsweep
from elastic_operator.sweep import PARAMS_ANNOTATION, STOP_ANNOTATION, SweepPlan, decide
from elastic_operator.sweep.space import to_text

Objective = Callable[[Mapping[str, Any], int], float]


def sweep_json(
    *,
    name: str = "sw",
    algorithm: str = "tpe",
    seed: int | None = 1,
    policy: str = "none",
    max_trials: int = 12,
    parallelism: int = 3,
    params: list[dict[str, Any]] | None = None,
    direction: str = "minimize",
    target: float | None = None,
    max_failed: int = 3,
    budget: dict[str, Any] | None = None,
    asha: dict[str, Any] | None = None,
    median: dict[str, Any] | None = None,
    startup: int = 4,
    gpus: int = 0,
    priority: int = 0,
) -> dict[str, Any]:
    early: dict[str, Any] = {"policy": policy, "resource": "epoch"}
    if asha is not None:
        early["asha"] = asha
    if median is not None:
        early["median"] = median
    algo: dict[str, Any] = {"name": algorithm, "startupTrials": startup}
    if seed is not None:
        algo["seed"] = seed
    objective: dict[str, Any] = {"metric": "loss", "direction": direction}
    if target is not None:
        objective["target"] = target
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    spec: dict[str, Any] = {
        "parameters": params
        or [
            {"name": "x", "type": "float", "low": -5.0, "high": 5.0},
            {"name": "n", "type": "int", "low": 1, "high": 8},
        ],
        "objective": objective,
        "algorithm": algo,
        "earlyStopping": early,
        "maxTrials": max_trials,
        "parallelism": parallelism,
        "maxFailedTrials": max_failed,
        "trialTemplate": {
            "spec": {
                "maxWorkers": 1,
                "priority": priority,
                "template": {
                    "image": "img",
                    "command": ["train"],
                    "args": [
                        f"--{p['name']}=${{params.{p['name']}}}" for p in (params or [{"name": "x"}, {"name": "n"}])
                    ],
                    "resources": resources,
                },
            }
        },
    }
    if budget is not None:
        spec["budget"] = budget
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TuningSweep",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": spec,
    }


@dataclass
class World:
    sweep: dict[str, Any]
    objective: Objective
    epochs: int = 9
    fail: Callable[[Mapping[str, Any]], bool] = lambda p: False
    workers: int = 1
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    plans: list[SweepPlan] = field(default_factory=list)
    now: float = 1_000_000.0
    last_round: float | None = None
    created: list[str] = field(default_factory=list)  # every successful create, in order
    lose_creates: bool = False  # crash after the status patch: the creates of this round never happen
    epochs_trained: int = 0

    def model(self) -> TuningSweep:
        sweep, issues = validate_tuningsweep(self.sweep)
        assert sweep is not None and not issues, issues
        return sweep

    def step(self, dt: float = 60.0) -> SweepPlan:
        plan = decide(self.model(), list(self.jobs.values()), self.now, accounted_until=self.last_round)
        self.last_round = self.now
        self.sweep["status"] = copy.deepcopy(plan.status)
        if not self.lose_creates:
            for new in plan.create:
                name = new.name
                if name in self.jobs:
                    continue
                self.created.append(name)
                self.jobs[name] = {
                    "metadata": {
                        "name": name,
                        "labels": {SWEEP_LABEL: self.sweep["metadata"]["name"], TRIAL_LABEL: str(new.number)},
                        "annotations": {PARAMS_ANNOTATION: json.dumps(to_text(new.params))},
                    },
                    "spec": self.sweep["spec"]["trialTemplate"]["spec"] | {"priority": new.priority},
                    "status": {"phase": "Queued"},
                    "_params": dict(new.params),
                }
        for stop in plan.stop:
            self.jobs[stop.name]["metadata"]["annotations"][STOP_ANNOTATION] = stop.reason
        self.plans.append(plan)
        self._train()
        self.now += dt
        return plan

    def _train(self) -> None:
        for job in self.jobs.values():
            status = job["status"]
            if status["phase"] in ("Succeeded", "Failed"):
                continue
            stop = job["metadata"]["annotations"].get(STOP_ANNOTATION)
            if stop:
                status.update(phase="Succeeded", message=f"stopped: {stop}", workers={"current": 0})
                continue
            if status["phase"] == "Queued":
                status.update(phase="Running", workers={"current": self.workers})
                continue
            params = job["_params"]
            if self.fail(params):
                status.update(phase="Failed", message="worker failed", workers={"current": 0})
                continue
            epoch = int((status.get("progress") or {}).get("epoch", 0)) + 1
            self.epochs_trained += 1
            status["progress"] = {
                "epoch": epoch,
                "step": epoch * 10,
                "metrics": {"loss": self.objective(params, epoch)},
            }
            status["workers"] = {"current": self.workers}
            if epoch >= self.epochs:
                status.update(phase="Succeeded", message="", workers={"current": 0})

    def run(self, rounds: int = 500) -> SweepPlan:
        plan = self.step()
        for _ in range(rounds):
            if plan.phase != "Running" and not any(
                j["status"]["phase"] not in ("Succeeded", "Failed") for j in self.jobs.values()
            ):
                return plan
            plan = self.step()
        raise AssertionError("sweep did not finish")


def quadratic(params: Mapping[str, Any], epoch: int) -> float:
    """Loss decreasing with epochs towards (x - 1)^2 + 0.1 * n."""
    final = (float(params["x"]) - 1.0) ** 2 + 0.1 * int(params.get("n", 0))
    return final + 5.0 / epoch
