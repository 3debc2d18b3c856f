"""The benchmark's world: `sweep.decide()` on a simulated cluster of trial slots, trials trained for real.

`Curves` trains the digits MLP (the model and hyperparameters of elastic_trainer.examples.digits: Linear(64,
hidden) - ReLU - Linear(hidden, 10), SGD with momentum 0.9, global batch size; scikit-learn's digits split 80/20
stratified, seed 0) one epoch at a time, lazily, and remembers each configuration's test accuracy after every
epoch, so a configuration asked by both arms is trained once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from elastic_operator.api.tuningsweep import SWEEP_LABEL, TRIAL_LABEL
from elastic_operator.api.validation import validate_tuningsweep
from elastic_operator.sweep import STOP_ANNOTATION, decide

Key = tuple[float, int, int]


@dataclass
class _Run:
    model: Any
    opt: Any
    gen: Any
    accuracy: list[float]


class Curves:
    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        try:
            from elastic_trainer.examples.digits import load_data
        except ImportError:  # the trainer package is optional for the operator's bench
            load_data = _load_data
        self.xtr, self.ytr, self.xte, self.yte = load_data(0)
        self.runs: dict[Key, _Run] = {}

    def __len__(self) -> int:
        return len(self.runs)

    def accuracy(self, lr: float, hidden: int, batch_size: int, epoch: int) -> float:
        """Test accuracy after `epoch` epochs (1-based), training further as needed."""
        torch = self.torch
        key = (lr, hidden, batch_size)
        run = self.runs.get(key)
        if run is None:
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
            run = self.runs[key] = _Run(model, opt, torch.Generator().manual_seed(0), [])
        while len(run.accuracy) < epoch:
            order = torch.randperm(len(self.xtr), generator=run.gen)
            for i in range(0, len(order), batch_size):
                idx = order[i : i + batch_size]
                loss = torch.nn.functional.cross_entropy(run.model(self.xtr[idx]), self.ytr[idx])
                run.opt.zero_grad()
                loss.backward()
                run.opt.step()
            with torch.no_grad():
                out = run.model(self.xte)
                acc = float((out.argmax(1) == self.yte).float().mean()) if torch.isfinite(out).all() else 0.0
            run.accuracy.append(acc)
        return run.accuracy[epoch - 1]


def _load_data(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.2, random_state=seed, stratify=y)
    f = torch.float32
    return torch.tensor(xtr, dtype=f), torch.tensor(ytr), torch.tensor(xte, dtype=f), torch.tensor(yte)


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
) -> dict[str, Any]:
    """The digits sweep of examples/sweep-digits.yaml, with the algorithm and early stopping of one arm."""
    objective: dict[str, Any] = {"metric": "accuracy", "direction": "maximize"}
    if target is not None:
        objective["target"] = target
    early: dict[str, Any] = {"policy": policy, "resource": "epoch"}
    if policy == "asha":
        early["asha"] = {
            "minResource": 1,
            "maxResource": epochs,
            "reductionFactor": 3,
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
    one epoch. Returns best accuracy, epochs trained, trials, pruned."""
    jobs: dict[str, dict[str, Any]] = {}
    params_of: dict[str, dict[str, Any]] = {}
    trained = 0
    now = 0.0
    plan = None
    for _ in range(max_rounds):
        sweep, issues = validate_tuningsweep(manifest)
        assert sweep is not None and not issues, issues
        plan = decide(sweep, list(jobs.values()), now)
        manifest["status"] = plan.status
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
            acc = curves.accuracy(float(p["lr"]), int(p["hidden"]), int(p["batch_size"]), epoch)
            trained += 1
            status["progress"] = {"epoch": epoch, "step": epoch, "metrics": {"accuracy": acc}}
            if epoch >= epochs:
                status["phase"] = "Succeeded"
            else:
                alive += 1
        now += 60.0
        if plan.phase != "Running" and alive == 0:
            break
    assert plan is not None
    best = plan.best
    return {
        "best": None if best is None else round(best.value, 6),
        "best_params": None if best is None else best.params,
        "epochs": trained,
        "trials": plan.counts.total,
        "pruned": plan.counts.pruned,
        "succeeded": plan.counts.succeeded,
        "stop_cause": plan.stop_cause,
        "status_bytes": len(json.dumps(plan.status)),
    }
