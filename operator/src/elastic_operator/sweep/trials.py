"""What the sweep needs to know about one trial's TrainingJob, read from its JSON (pure).

The annotations are the sweep's side of the contract with the TrainingJob controller: `elastic.training/stop`
asks a trial to stop cleanly (all workers checkpoint and exit, the job ends Succeeded with `stopped: <reason>`);
`elastic.training/promising` marks the best running trial (see docs/sweeps.md); `elastic.training/trial-params`
records the trial's parameters on the job itself, so a trial whose record was lost is adopted, not repeated.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from elastic_operator.api.tuningsweep import TRIAL_LABEL

STOP_ANNOTATION = "elastic.training/stop"
PROMISING_ANNOTATION = "elastic.training/promising"
PARAMS_ANNOTATION = "elastic.training/trial-params"
PRIORITY_BUMP = 1
"""The promising trial's priority is the template's priority plus this (docs/sweeps.md)."""

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)$")


@dataclass(frozen=True)
class TrialJob:
    """One observed trial TrainingJob."""

    name: str
    number: int | None
    phase: str = ""  # "" before the controller wrote a status
    message: str = ""
    epoch: int | None = None
    step: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    workers: int = 0
    gpus_per_worker: float = 0.0
    stop_reason: str | None = None
    promising: bool = False
    params_text: Mapping[str, str] | None = None
    deleting: bool = False

    def resource(self, kind: str) -> int | None:
        return self.epoch if kind == "epoch" else self.step

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> int | None:
    """A non-negative integer progress counter, else None (a trial's status is read, never trusted)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**53 else None


def gpus(resources: Mapping[str, Any]) -> float:
    """GPUs of one worker: every resource whose name ends in `gpu` (nvidia.com/gpu, amd.com/gpu), from limits,
    else requests."""
    total = 0.0
    for section in ("limits", "requests"):
        values = _map(resources.get(section))
        found = [v for k, v in values.items() if str(k).endswith("gpu")]
        if found:
            for v in found:
                m = _QUANTITY.match(str(v))
                total += float(m.group(1)) if m else 0.0
            return total
    return total


def from_job(obj: Mapping[str, Any]) -> TrialJob:
    """A trial's TrainingJob JSON -> TrialJob. Tolerates missing, partial or malformed status, labels and
    annotations (a field of the wrong type reads as absent): one odd trial must not stop its sweep."""
    meta = _map(obj.get("metadata"))
    labels = _map(meta.get("labels"))
    annotations = _map(meta.get("annotations"))
    number: int | None
    label = labels.get(TRIAL_LABEL)
    number = int(label) if isinstance(label, str) and label.isascii() and label.isdigit() else None
    status = _map(obj.get("status"))
    progress = _map(status.get("progress"))
    spec = _map(obj.get("spec"))
    resources = _map(_map(spec.get("template")).get("resources"))
    params: Mapping[str, str] | None = None
    raw = annotations.get(PARAMS_ANNOTATION)
    if raw and isinstance(raw, str):
        try:
            decoded = json.loads(raw)
            if isinstance(decoded, dict) and all(isinstance(v, str) for v in decoded.values()):
                params = {str(k): v for k, v in decoded.items()}
        except (ValueError, RecursionError):
            params = None
    metrics = {
        str(k): float(v)
        for k, v in _map(progress.get("metrics")).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    stop = annotations.get(STOP_ANNOTATION)
    phase, message = status.get("phase"), status.get("message")
    return TrialJob(
        name=str(meta.get("name", "")),
        number=number,
        phase=phase if isinstance(phase, str) else "",
        message=message if isinstance(message, str) else "",
        epoch=_count(progress.get("epoch")),
        step=_count(progress.get("step")),
        metrics=metrics,
        workers=_count(_map(status.get("workers")).get("current")) or 0,
        gpus_per_worker=gpus(resources),
        stop_reason=stop if isinstance(stop, str) else None,
        promising=annotations.get(PROMISING_ANNOTATION) == "true",
        params_text=params,
        deleting=bool(meta.get("deletionTimestamp")),
    )
