"""The benchmark's world: `sweep.decide()` on a simulated cluster of trial slots, trials trained for real.

`Curves` trains the digits MLP as elastic_trainer.examples.digits does when run as one process (its data split,
model, initialisation, elastic sampler order, SGD with momentum 0.9; scores from its `epoch_metrics`), one epoch at a
time, lazily, and remembers each configuration's metrics after every epoch, so a configuration asked by both arms
(or by two seeds) is trained once. In-process rather than one process per trial: a process start (torch import)
costs more than a whole digits epoch, and the curves are identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from elastic_operator.api.tuningsweep import SWEEP_LABEL, TRIAL_LABEL
from elastic_operator.api.validation import validate_tuningsweep
from elastic_operator.sweep import STOP_ANNOTATION, decide
from elastic_trainer.examples import digits
from elastic_trainer.sampler import ElasticSampler

Key = tuple[float, int, int]
Metrics = dict[str, float]


@dataclass
class _Run:
    model: Any
    opt: Any
    epochs: list[Metrics]
    best: dict[str, Any] | None = None


class Curves:
    """Each configuration's metrics after every epoch, trained lazily, once."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.data = digits.load_data(0)
        self.runs: dict[Key, _Run] = {}

    def __len__(self) -> int:
        return len(self.runs)

    def metrics(self, lr: float, hidden: int, batch_size: int, epoch: int) -> Metrics:
        """The example's metrics after `epoch` epochs (1-based), training further as needed; plus best_accuracy,
        the test accuracy of the model kept for best_val_accuracy (what the trial would hand over)."""
        torch = self.torch
        xtr, ytr = self.data[0], self.data[1]
        key = (lr, hidden, batch_size)
        run = self.runs.get(key)
        if run is None:
            torch.manual_seed(0)
            model = digits.build_model(hidden)
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            run = self.runs[key] = _Run(model, opt, [])
        while len(run.epochs) < epoch:
            for idx in ElasticSampler(len(xtr), batch_size=batch_size, rank=0, world_size=1, epoch=len(run.epochs)):
                index = torch.tensor(idx, dtype=torch.long)
                loss = torch.nn.functional.cross_entropy(run.model(xtr[index]), ytr[index])
                run.opt.zero_grad()
                loss.backward()
                run.opt.step()
            scores, run.best = digits.epoch_metrics(run.model, self.data, run.best)
            assert run.best is not None
            run.epochs.append({**scores, "best_accuracy": run.best["accuracy"]})
        return run.epochs[epoch - 1]


def sweep_manifest(
    *,
    seed: int,
    trials: int,
    epochs: int,
    parallelism: int,
    policy: str,
    target: float | None = None,
    early_stopping_rate: int = 0,
    algorithm: str = "random",
    metric: str = "best_val_accuracy",
    direction: str = "maximize",
    min_resource: int = 1,
    reduction_factor: int = 3,
) -> dict[str, Any]:
    """The digits sweep of examples/sweep-digits.yaml, with the algorithm and early stopping of one arm."""
    objective: dict[str, Any] = {"metric": metric, "direction": direction}
    if target is not None:
        objective["target"] = target
    early: dict[str, Any] = {"policy": policy, "resource": "epoch"}
    if policy == "asha":
        early["asha"] = {
            "minResource": min_resource,
            "maxResource": epochs,
            "reductionFactor": reduction_factor,
            "minEarlyStoppingRate": early_stopping_rate,
        }
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TuningSweep",
        "metadata": {"name": f"bench-{policy}", "namespace": "bench", "uid": f"bench-{seed}", "generation": 1},
        "spec": {
            "parameters": [
                {"name": "lr", "type": "float", "low": 0.001, "high": 0.5, "log": True},
                {"name": "hidden", "type": "int", "low": 16, "high": 256, "log": True},
                {"name": "batch_size", "type": "categorical", "values": [16, 32, 64, 128]},
            ],
            "objective": objective,
            "algorithm": {"name": algorithm, "seed": seed, "startupTrials": 6},
            "earlyStopping": early,
            "maxTrials": trials,
            "parallelism": parallelism,
            "maxFailedTrials": trials,
            "trialTemplate": {
                "spec": {
                    "maxWorkers": 1,
                    "template": {
                        "image": "bench",
                        "command": ["python", "-m", "elastic_trainer.examples.digits"],
                        "args": [
                            "--lr",
                            "${params.lr}",
                            "--hidden",
                            "${params.hidden}",
                            "--batch-size",
                            "${params.batch_size}",
                            "--epochs",
                            str(epochs),
                        ],
                    },
                }
            },
        },
    }


def run_sweep(manifest: dict[str, Any], curves: Curves, epochs: int, max_rounds: int = 10_000) -> dict[str, Any]:
    """Run one sweep to its end. Each round: decide, apply (status, creates, stops), every running trial trains
    one epoch. Returns the best value, its trial's handed-over test accuracy, epochs trained, trials, pruned, and
    `trace`: [epochs trained, best value] each time the best completed value improved."""
    jobs: dict[str, dict[str, Any]] = {}
    params_of: dict[str, dict[str, Any]] = {}
    trained = 0
    trace: list[list[float]] = []
    now = 0.0
    plan = None
    for _ in range(max_rounds):
        sweep, issues = validate_tuningsweep(manifest)
        assert sweep is not None and not issues, issues
        plan = decide(sweep, list(jobs.values()), now)
        manifest["status"] = plan.status
        if plan.best is not None and (not trace or plan.best.value != trace[-1][1]):
            trace.append([trained, plan.best.value])
        for new in plan.create:
            jobs[new.name] = {
                "metadata": {
                    "name": new.name,
                    "labels": {SWEEP_LABEL: manifest["metadata"]["name"], TRIAL_LABEL: str(new.number)},
                    "annotations": {},
                },
                "status": {"phase": "Running", "workers": {"current": 1}},
            }
            params_of[new.name] = dict(new.params)
        for stop in plan.stop:
            jobs[stop.name]["metadata"]["annotations"][STOP_ANNOTATION] = stop.reason
        alive = 0
        for name, job in jobs.items():
            status = job["status"]
            if status["phase"] != "Running":
                continue
            if job["metadata"]["annotations"].get(STOP_ANNOTATION):
                status.update(phase="Succeeded", message="stopped: " + job["metadata"]["annotations"][STOP_ANNOTATION])
                continue
            p = params_of[name]
            epoch = int((status.get("progress") or {}).get("epoch", 0)) + 1
            metrics = curves.metrics(float(p["lr"]), int(p["hidden"]), int(p["batch_size"]), epoch)
            trained += 1
            status["progress"] = {"epoch": epoch, "step": epoch, "metrics": dict(metrics)}
            if epoch >= epochs:
                status["phase"] = "Succeeded"
            else:
                alive += 1
        now += 60.0
        if plan.phase != "Running" and alive == 0:
            break
    assert plan is not None
    best = plan.best
    test_accuracy = None
    if best is not None and best.params is not None:
        p = best.params
        final = curves.metrics(float(p["lr"]), int(p["hidden"]), int(p["batch_size"]), epochs)
        kept = "best_accuracy" if manifest["spec"]["objective"]["metric"].startswith("best_") else "accuracy"
        test_accuracy = final[kept]  # the kept model's test accuracy when selecting on a best-so-far metric
    return {
        "best": None if best is None else best.value,
        "best_params": None if best is None else best.params,
        "best_test_accuracy": test_accuracy,
        "epochs": trained,
        "trials": plan.counts.total,
        "pruned": plan.counts.pruned,
        "succeeded": plan.counts.succeeded,
        "stop_cause": plan.stop_cause,
        "status_bytes": len(json.dumps(plan.status)),
        "trace": trace,
    }
