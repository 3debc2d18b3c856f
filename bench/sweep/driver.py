"""The benchmark's world: `sweep.decide()` on a simulated cluster of trial slots, trials trained for real.

The sweep is examples/sweep-digits.yaml itself (its space, objective, ASHA settings and trial template); an arm
changes only the algorithm, the early stopping policy, the trial limits and the target. A trial's hyperparameters
come from its rendered TrainingJob: the operator substitutes the parameters into the template's args and the
digits example's own argument parser reads them, so the benchmark trains exactly what the trial would run.

`Curves` trains the digits MLP as elastic_trainer.examples.digits does when run as one process (its data split,
seeded initialisation, elastic sampler order, SGD, mean cross-entropy; scores from its `epoch_metrics`), one epoch
at a time, lazily, and remembers each configuration's metrics after every epoch, so a configuration asked by both
arms (or by two seeds) is trained once. In-process rather than one process per trial: a process start (torch
import) costs more than a whole digits epoch, and the curves are identical.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from elastic_operator.api.tuningsweep import SWEEP_LABEL, TRIAL_LABEL, TuningSweep
from elastic_operator.api.validation import validate_tuningsweep
from elastic_operator.sweep import STOP_ANNOTATION, decide
from elastic_trainer.examples import digits
from elastic_trainer.sampler import ElasticSampler

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sweep-digits.yaml"

Key = tuple[float, float, int, int, int, str]  # lr, momentum, hidden, batch size, seed, dataset
Metrics = dict[str, float]


@dataclass
class _Run:
    model: Any
    opt: Any
    epochs: list[Metrics]
    best: dict[str, Any] | None = None


def load_example(path: Path = EXAMPLE) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def trial_args(sweep: TuningSweep, params: Mapping[str, Any]) -> argparse.Namespace:
    """The digits example's arguments for a trial: the template rendered with `params` by the operator's code,
    parsed by the example's own parser (so a flag the example does not know fails here, as it would in the pod)."""
    template = sweep.spec.render_trial(params).template
    command = list(template.command or [])
    assert command[-1:] == ["elastic_trainer.examples.digits"], f"the benchmark trains the digits example: {command}"
    return digits.parse_args([str(a) for a in template.args])


class Curves:
    """Each configuration's metrics after every epoch, trained lazily, once."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.data: dict[tuple[int, str], Any] = {}
        self.runs: dict[Key, _Run] = {}

    def __len__(self) -> int:
        return len(self.runs)

    def metrics(self, args: argparse.Namespace, epoch: int) -> Metrics:
        """The example's metrics after `epoch` epochs (1-based), training further as needed; plus best_accuracy,
        the test accuracy of the model kept for best_val_accuracy (what the trial would hand over)."""
        torch = self.torch
        dataset = (int(args.seed), str(args.dataset))
        if dataset not in self.data:
            self.data[dataset] = digits.load_data(*dataset)
        data = self.data[dataset]
        xtr, ytr = data[0], data[1]
        key = (float(args.lr), float(args.momentum), int(args.hidden), int(args.batch_size), *dataset)
        run = self.runs.get(key)
        if run is None:
            torch.manual_seed(args.seed)
            model = digits.build_model(args.hidden, args.dataset)
            opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
            run = self.runs[key] = _Run(model, opt, [])
        while len(run.epochs) < epoch:
            sampler = ElasticSampler(
                len(xtr), batch_size=args.batch_size, rank=0, world_size=1, epoch=len(run.epochs), seed=args.seed
            )
            loss_sum, samples = 0.0, 0
            for idx in sampler:
                index = torch.tensor(idx, dtype=torch.long)
                loss = torch.nn.functional.cross_entropy(run.model(xtr[index]), ytr[index])
                run.opt.zero_grad()
                loss.backward()
                run.opt.step()
                loss_sum += loss.item() * len(idx)
                samples += len(idx)
            scores, run.best = digits.epoch_metrics(run.model, data, run.best)
            assert run.best is not None
            loss_mean = loss_sum / max(1, samples)
            run.epochs.append({"loss": loss_mean, **scores, "best_accuracy": run.best["accuracy"]})
        return run.epochs[epoch - 1]


def sweep_manifest(
    example: Mapping[str, Any],
    *,
    seed: int,
    trials: int,
    parallelism: int,
    early_stopping: bool,
    algorithm: str = "random",
    target: float | None = None,
) -> dict[str, Any]:
    """One arm's sweep: the example's space, objective, trial template and (with `early_stopping`) its ASHA
    settings; `algorithm` seeded with `seed` (the example's startupTrials for TPE); no target unless given; no
    budget (the benchmark's clock is simulated: every round is a minute)."""
    doc = copy.deepcopy(dict(example))
    spec = doc["spec"]
    spec.pop("budget", None)
    spec["objective"].pop("target", None)
    if target is not None:
        spec["objective"]["target"] = target
    startup = (spec.get("algorithm") or {}).get("startupTrials")
    spec["algorithm"] = {"name": algorithm, "seed": seed, **({"startupTrials": startup} if startup else {})}
    resource = (spec.get("earlyStopping") or {}).get("resource", "epoch")
    if not early_stopping:
        spec["earlyStopping"] = {"policy": "none", "resource": resource}
    spec.update(maxTrials=trials, parallelism=parallelism, maxFailedTrials=trials)
    name = f"bench-{algorithm}-{'asha' if early_stopping else 'full'}"
    doc["metadata"] = {"name": name, "namespace": "bench", "uid": f"{name}-{seed}", "generation": 1}
    return doc


def run_sweep(manifest: dict[str, Any], curves: Curves, max_rounds: int = 10_000) -> dict[str, Any]:
    """Run one sweep to its end. Each round: decide, apply (status, creates, stops), every running trial trains
    one epoch. Returns the best value, its trial's handed-over test accuracy, epochs trained, trials, pruned, and
    `trace`: [epochs trained, best value] each time the best completed value improved."""
    jobs: dict[str, dict[str, Any]] = {}
    args_of: dict[str, argparse.Namespace] = {}
    trained = 0
    trace: list[list[float]] = []
    now = 0.0
    plan = None
    sweep = None
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
            args_of[new.name] = trial_args(sweep, new.params)
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
            args = args_of[name]
            epoch = int((status.get("progress") or {}).get("epoch", 0)) + 1
            metrics = curves.metrics(args, epoch)
            trained += 1
            status["progress"] = {"epoch": epoch, "step": epoch, "metrics": dict(metrics)}
            if epoch >= args.epochs:
                status["phase"] = "Succeeded"
            else:
                alive += 1
        now += 60.0
        if plan.phase != "Running" and alive == 0:
            break
    assert plan is not None and sweep is not None
    best = plan.best
    test_accuracy = None
    if best is not None and best.params is not None:
        args = trial_args(sweep, best.params)
        final = curves.metrics(args, args.epochs)
        kept = "best_accuracy" if sweep.spec.objective.metric == "best_val_accuracy" else "accuracy"
        test_accuracy = final[kept]  # the kept model's test accuracy when selecting on best_val_accuracy
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
