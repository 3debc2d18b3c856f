"""Hyperparameter sweeps (PURE: no kopf, no Kubernetes client, no I/O, no clock reads).

`decide(sweep, trials, now) -> SweepPlan` is the whole sweep controller's logic; `k8s/sweeps.py` applies it.
`space` maps the spec's search space to Optuna; `study` rebuilds an in-memory Optuna study from the recorded trials
(ask for new parameters, let the pruner judge intermediate values); `trials` reads a trial's TrainingJob.
"""

from elastic_operator.sweep.decide import NewTrial, StopTrial, SweepEvent, SweepPlan, decide, invalid_status
from elastic_operator.sweep.trials import PARAMS_ANNOTATION, PROMISING_ANNOTATION, STOP_ANNOTATION, TrialJob, from_job

__all__ = [
    "PARAMS_ANNOTATION",
    "PROMISING_ANNOTATION",
    "STOP_ANNOTATION",
    "NewTrial",
    "StopTrial",
    "SweepEvent",
    "SweepPlan",
    "TrialJob",
    "decide",
    "from_job",
    "invalid_status",
]
