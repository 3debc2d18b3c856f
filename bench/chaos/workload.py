"""What the chaos run asks the operator to do: seeded TrainingJobs of different sizes and priorities, and small
TuningSweeps whose trials are TrainingJobs too. The simulated trainers read the target step count from an
annotation, so a job is done when its training (not a timer) reaches it."""

from __future__ import annotations

import json
import random
from typing import Any

GPU = "nvidia.com/gpu"
TARGET_ANNOTATION = "chaos.elastic.training/target-steps"
TRIAL_TARGET_STEPS = 150  # a sweep trial trains this many steps (3 epochs of 50)
STEPS_PER_EPOCH = 50


def _template() -> dict[str, Any]:
    return {
        "image": "registry.invalid/trainer:0",
        "command": ["python", "-m", "elastic_trainer.examples.digits"],
        "resources": {"limits": {GPU: "1"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
    }


def job_manifest(rng: random.Random, name: str, steps: tuple[int, int] = (200, 500)) -> dict[str, Any]:
    """1..2 minimum workers, up to 4, priority 0..2, `steps` (low, high) steps of training, in multiples of 50."""
    min_workers = rng.randint(1, 2)
    target = rng.randrange(steps[0], steps[1] + 1, 50)
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "annotations": {TARGET_ANNOTATION: str(target)}},
        "spec": {
            "minWorkers": min_workers,
            "maxWorkers": rng.randint(max(2, min_workers), 4),
            "priority": rng.randint(0, 2),
            "template": _template(),
            "elasticity": {"rescaleCooldownSeconds": rng.choice([0, 2, 5])},
        },
    }


def sweep_manifest(rng: random.Random, name: str, max_trials: int) -> dict[str, Any]:
    """Random search over two parameters, two trials at a time; each trial an elastic 1..2-worker job."""
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TuningSweep",
        "metadata": {"name": name},
        "spec": {
            "parameters": [
                {"name": "x", "type": "float", "low": -2.0, "high": 2.0},
                {"name": "y", "type": "float", "low": -2.0, "high": 2.0},
            ],
            "objective": {"metric": "loss", "direction": "minimize"},
            "algorithm": {"name": "random", "seed": rng.randrange(2**31)},
            "maxTrials": max_trials,
            "parallelism": 2,
            "maxFailedTrials": max_trials,
            "trialTemplate": {
                "spec": {
                    "minWorkers": 1,
                    "maxWorkers": 2,
                    "template": {**_template(), "args": ["--x", "${params.x}", "--y", "${params.y}"]},
                    "elasticity": {"rescaleCooldownSeconds": 0},
                },
            },
        },
    }


def target_steps(job: dict[str, Any]) -> int:
    annotations = job["metadata"].get("annotations") or {}
    return int(annotations.get(TARGET_ANNOTATION) or TRIAL_TARGET_STEPS)


def trial_loss(job: dict[str, Any], epoch: int) -> float:
    """A known objective for sweep trials (a bowl around (0.5, -0.5) that improves with epochs); 1.0 otherwise."""
    raw = (job["metadata"].get("annotations") or {}).get("elastic.training/trial-params")
    if not raw:
        return 1.0
    params = json.loads(raw)
    return (float(params["x"]) - 0.5) ** 2 + (float(params["y"]) + 0.5) ** 2 + 1.0 / max(1, epoch)
