"""Round trip through a real API server, property-based: model -> JSON -> API server (create, then status through
the status subresource) -> model is lossless, for generated TrainingJobs and TuningSweeps of every shape."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from elastic_operator.api import TrainingJob, TuningSweep
from hack.devcluster import DevCluster
from tests.unit.api.strategies import trainingjobs, tuningsweeps

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def rt_ns(cluster: DevCluster) -> Iterator[str]:
    cluster.apply_crds()
    name = f"rt-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def through_server(cluster: DevCluster, ns: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    cluster.kubectl("delete", plural, name, "-n", ns, "--ignore-not-found", "--wait=true")
    body = {k: v for k, v in obj.items() if k != "status"}
    created = cluster.kubectl("create", "-n", ns, "-f", "-", "-o", "json", input=json.dumps(body), check=False)
    assert created.returncode == 0, created.stderr
    if "status" in obj:
        patch = json.dumps({"status": obj["status"]})
        patched = cluster.kubectl(
            "patch", plural, name, "-n", ns, "--subresource=status", "--type=merge", "-p", patch, check=False
        )
        assert patched.returncode == 0, patched.stderr
    stored: dict[str, Any] = json.loads(cluster.kubectl("get", plural, name, "-n", ns, "-o", "json").stdout)
    cluster.kubectl("delete", plural, name, "-n", ns, "--wait=false")
    return stored


@SETTINGS
@given(obj=trainingjobs(with_status=True))
def test_trainingjob_round_trip(cluster: DevCluster, rt_ns: str, obj: dict[str, Any]) -> None:
    model = TrainingJob.model_validate(obj)
    stored = through_server(cluster, rt_ns, "trainingjobs", model.to_json())
    back = TrainingJob.model_validate(stored)
    assert back.spec == model.spec
    assert back.status == model.status


@SETTINGS
@given(obj=tuningsweeps(with_status=True))
def test_tuningsweep_round_trip(cluster: DevCluster, rt_ns: str, obj: dict[str, Any]) -> None:
    model = TuningSweep.model_validate(obj)
    stored = through_server(cluster, rt_ns, "tuningsweeps", model.to_json())
    back = TuningSweep.model_validate(stored)
    assert back.spec == model.spec
    assert back.status == model.status


def test_defaults_are_applied_by_the_server(cluster: DevCluster, rt_ns: str) -> None:
    minimal = {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "defaults"},
        "spec": {"maxWorkers": 2, "template": {"image": "i", "command": ["python"]}},
    }
    stored = through_server(cluster, rt_ns, "trainingjobs", minimal)
    spec = stored["spec"]
    assert spec["minWorkers"] == 1 and spec["nprocPerWorker"] == 1 and spec["priority"] == 0
    assert spec["elasticity"] == {"rescaleCooldownSeconds": 60, "allowShrink": True, "allowRequeue": True}
    assert spec["failurePolicy"] == {"maxRestarts": 3, "backoffSeconds": 10, "maxBackoffSeconds": 300}
    assert TrainingJob.model_validate(stored).spec == TrainingJob.model_validate(minimal).spec
