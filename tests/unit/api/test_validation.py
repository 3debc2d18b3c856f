"""validate_trainingjob / validate_tuningsweep: the invalid-manifest corpus is rejected with the field named (the
same corpus the integration tests send to the API server), valid objects pass, status never makes spec invalid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from elastic_operator.api import validate_trainingjob, validate_tuningsweep
from elastic_operator.api.validation import trainingjob_issues

REPO = Path(__file__).resolve().parents[3]
CORPUS = sorted((REPO / "tests" / "integration" / "invalid_manifests").glob("*.yaml"))


def expected_field(path: Path) -> str:
    match = re.search(r"^# expect: (\S+)", path.read_text(), re.M)
    assert match, f"{path.name} has no '# expect: <field>' line"
    return match.group(1)


def validate(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return (validate_trainingjob if doc["kind"] == "TrainingJob" else validate_tuningsweep)(doc)[1]


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in CORPUS}
    assert kinds == {"TrainingJob", "TuningSweep"}


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_invalid_manifest_rejected_naming_the_field(path: Path) -> None:
    field = expected_field(path)
    issues = validate(yaml.safe_load(path.read_text()))
    assert issues, "accepted"
    assert any(p == field or p.startswith((field + ".", field + "[")) for p, _ in issues), issues
    assert all(message for _, message in issues)


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_valid(path: Path) -> None:
    assert validate(yaml.safe_load(path.read_text())) == []


def job(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "uid": "u", "managedFields": [{"manager": "kubectl"}], "generation": 3},
        "spec": {"maxWorkers": 2, "template": {"image": "i", "command": ["python"]}, **spec},
    }


def test_valid_job_returns_the_model() -> None:
    model, issues = validate_trainingjob(job(minWorkers=2))
    assert issues == [] and model is not None and model.spec.min_workers == 2
    assert model.metadata.uid == "u" and model.metadata.generation == 3


def test_several_issues_reported_at_once() -> None:
    issues = dict(trainingjob_issues(job(maxWorkers=0, nprocPerWorker=0)))
    assert set(issues) == {"spec.maxWorkers", "spec.nprocPerWorker"}
    assert "greater than or equal to 1" in issues["spec.maxWorkers"]


def test_missing_and_unknown_fields() -> None:
    obj = job()
    del obj["spec"]["template"]["image"]
    obj["spec"]["replicas"] = 2
    assert dict(trainingjob_issues(obj)) == {
        "spec.template.image": "required field is missing",
        "spec.replicas": "unknown field",
    }


def test_placeholder_left_in_a_job_names_the_exact_field() -> None:
    obj = job()
    obj["spec"]["template"]["env"] = [{"name": "LR", "value": "${params.lr}"}]
    assert [p for p, _ in trainingjob_issues(obj)] == ["spec.template.env[0].value"]


def test_status_never_makes_spec_invalid() -> None:
    obj = job()
    obj["status"] = {"phase": "SomethingNew", "futureField": 1}
    model, issues = validate_trainingjob(obj)
    assert issues == [] and model is not None and model.status is None
    obj["status"] = {"phase": "Running", "rescaleGeneration": 2}
    model, _ = validate_trainingjob(obj)
    assert model is not None and model.status is not None and model.status.rescale_generation == 2


def test_not_an_object() -> None:
    assert validate_trainingjob([])[1] == [("<object>", "not an object")]  # type: ignore[arg-type]
