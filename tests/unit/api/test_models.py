"""The models: defaults, round trips, strictness, and the status contract with the controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from elastic_operator.api import TrainingJob, TrainingJobStatus, TuningSweep
from elastic_operator.api.trainingjob import TrainingJobSpec
from elastic_operator.api.tuningsweep import TuningSweepStatus
from elastic_operator.lifecycle.state import JobRuntime, Leaving, Slot, to_status
from tests.unit.api.strategies import trainingjobs, tuningsweeps

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def minimal_job(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j"},
        "spec": {"maxWorkers": 2, "template": {"image": "img", "command": ["python", "train.py"]}, **spec},
    }


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"trainingjob-cpu.yaml", "trainingjob-gpu.yaml", "sweep-digits.yaml", "sweep-mnist1d.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_and_round_trip(path: Path) -> None:
    doc = load(path)
    model: type[TrainingJob] | type[TuningSweep] = TrainingJob if doc["kind"] == "TrainingJob" else TuningSweep
    parsed = model.model_validate(doc)
    again = model.model_validate(parsed.to_json())
    assert again == parsed


def test_defaults_applied() -> None:
    job = TrainingJob.model_validate(minimal_job())
    spec = job.spec
    assert (spec.min_workers, spec.max_workers, spec.nproc_per_worker, spec.priority) == (1, 2, 1, 0)
    assert spec.elasticity.rescale_cooldown_seconds == 60
    assert spec.elasticity.allow_shrink and spec.elasticity.allow_requeue
    assert spec.failure_policy.max_restarts == 3
    assert spec.suspend is False
    assert spec.checkpoint is None
    assert spec.template.args == [] and spec.template.env == []
    wire = job.to_json()["spec"]
    assert wire["minWorkers"] == 1 and wire["failurePolicy"]["maxBackoffSeconds"] == 300


def test_wire_names_are_camel_case_and_python_names_snake_case() -> None:
    job = TrainingJob.model_validate(minimal_job(nprocPerWorker=4, ttlSecondsAfterFinished=60))
    assert job.spec.nproc_per_worker == 4
    assert job.spec.ttl_seconds_after_finished == 60
    wire = job.to_json()
    assert wire["spec"]["nprocPerWorker"] == 4 and "nproc_per_worker" not in wire["spec"]
    assert wire["apiVersion"] == "elastic.training/v1alpha1"


def test_strict_like_the_api_server() -> None:
    with pytest.raises(ValidationError):
        TrainingJob.model_validate(minimal_job(maxWorkers="2"))
    with pytest.raises(ValidationError):
        TrainingJob.model_validate(minimal_job(suspend="true"))
    with pytest.raises(ValidationError):
        TrainingJob.model_validate(minimal_job(replicas=3))


def test_quantities_accept_ints_and_strings() -> None:
    job = TrainingJob.model_validate(
        minimal_job(
            template={
                "image": "i",
                "command": ["c"],
                "resources": {"limits": {"nvidia.com/gpu": 8, "memory": "16Gi"}, "requests": {"cpu": "500m"}},
            }
        )
    )
    assert job.spec.template.resources.limits == {"nvidia.com/gpu": 8, "memory": "16Gi"}
    with pytest.raises(ValidationError):
        TrainingJobSpec.model_validate(
            {"maxWorkers": 1, "template": {"image": "i", "command": ["c"], "resources": {"limits": {"cpu": "-1"}}}}
        )


def test_status_accepts_what_the_controller_writes() -> None:
    """Contract with lifecycle.state.to_status: every key it writes is in the schema (else the API server would
    prune it silently and the controller would lose state)."""
    rt = JobRuntime(
        phase="Running",
        rescale_generation=3,
        placement=(Slot(0, "n0", True), Slot(2, "n1", False)),
        members=(0, 2),
        leaving=(Leaving(1, 1_700_000_000.0),),
        next_slot=3,
        rendezvous_pod="j-rdzv-1",
        rendezvous_seen=True,
        rendezvous_count=1,
        restarts={"workerFailed": 1},
        rescales={"grow": 2},
        recent_failures=(1_700_000_000.0,),
        start_time=1_700_000_000.0,
        last_rescale_time=1_700_000_100.0,
        generation_started=1_700_000_100.0,
        message="running",
    )
    written = to_status(rt)
    written["observedGeneration"] = 2
    written["progress"] = {
        "step": 10,
        "epoch": 1,
        "samplesPerSecond": 12.5,
        "metrics": {"loss": 0.5},
        "lastCheckpointStep": 8,
        "lastReportTime": "2024-01-01T00:00:00Z",
    }
    written["lastDecision"] = {
        "action": "grow",
        "reason": "spare GPUs",
        "targetWorkers": 3,
        "queueDepth": 0,
        "freeGPUs": 8,
        "blockingCause": "",
        "inputs": {"gain": "1.3"},
        "queuePosition": 0,
        "time": "2024-01-01T00:00:00Z",
    }
    status = TrainingJobStatus.model_validate(written)  # extra="forbid": an unknown key fails here
    assert status.rescale_generation == 3
    assert status.workers.current == 2 and status.workers.target == 2
    assert status.restarts.worker_failed == 1 and status.rescales.grow == 2
    assert [s.slot for s in status.controller.placement] == [0, 2]
    assert status.last_decision is not None and status.last_decision.free_gpus == 8
    assert status.to_json()["lastDecision"]["freeGPUs"] == 8


def test_status_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        TrainingJobStatus.model_validate({"phase": "Running", "replicas": 2})
    with pytest.raises(ValidationError):
        TrainingJobStatus.model_validate({"phase": "Exploded"})


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(trainingjobs(with_status=True))
def test_trainingjob_round_trip(obj: dict[str, Any]) -> None:
    model = TrainingJob.model_validate(obj)
    assert TrainingJob.model_validate(model.to_json()) == model


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(tuningsweeps(with_status=True))
def test_tuningsweep_round_trip(obj: dict[str, Any]) -> None:
    model = TuningSweep.model_validate(obj)
    assert TuningSweep.model_validate(model.to_json()) == model
    assert model.status is not None
    assert TuningSweepStatus.model_validate(model.status.to_json()) == model.status
