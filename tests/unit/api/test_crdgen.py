"""The generated CRDs: structural, fully described, with the defaults, bounds, CEL rules and printer columns the
API promises, and identical to the committed files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from elastic_operator.api import crdgen
from elastic_operator.api.schema import ALLOWED_KEYS, FORBIDDEN, openapi_schema, structural_problems
from elastic_operator.api.trainingjob import TrainingJob
from hack.check_generated import compare

JSON = dict[str, Any]
CRDS = {k.kind: crdgen.crd(k) for k in crdgen.KINDS}


def root(kind: str) -> JSON:
    schema: JSON = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: JSON, path: str = "") -> Iterator[tuple[str, JSON]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")


def at(schema: JSON, path: str) -> JSON:
    node = schema
    for part in path.strip(".").split("."):
        node = node["properties"][part] if part != "[]" else node["items"]
    return node


def rules(node: JSON) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural_and_every_field_described(kind: str) -> None:
    assert structural_problems(root(kind)) == []


def test_structural_check_can_fail() -> None:
    bad = {
        "type": "object",
        "description": "x",
        "properties": {
            "a": {"description": "no type"},
            "b": {"type": "string"},
            "c": {"type": "object", "description": "c", "additionalProperties": False, "$ref": "#/x"},
        },
    }
    problems = structural_problems(bad)
    assert ".a: no type" in problems
    assert ".b: no description" in problems
    assert any(p.startswith(".c: forbidden keyword $ref") for p in problems)
    assert ".c: additionalProperties: false" in problems
    assert any("object with neither" in p for p in structural_problems({"type": "object", "description": "d"}))


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_only_keywords_a_crd_accepts(kind: str) -> None:
    for path, node in walk(root(kind)):
        assert set(node) <= ALLOWED_KEYS, path
        assert not set(node) & FORBIDDEN, path
        assert node.get("additionalProperties") is not False, path


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_strings_lists_and_maps_in_spec_are_bounded(kind: str) -> None:
    """CEL cost estimates need bounds; unbounded strings/lists in spec would also let one object grow without limit."""
    for path, node in walk(root(kind)["properties"]["spec"], ".spec"):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node or "pattern" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_trainingjob_defaults() -> None:
    spec = root("TrainingJob")["properties"]["spec"]
    assert at(spec, "minWorkers")["default"] == 1
    assert at(spec, "nprocPerWorker")["default"] == 1
    assert at(spec, "priority")["default"] == 0
    assert at(spec, "suspend")["default"] is False
    assert at(spec, "elasticity")["default"] == {
        "rescaleCooldownSeconds": 60,
        "allowShrink": True,
        "allowRequeue": True,
    }
    assert at(spec, "failurePolicy")["default"] == {"maxRestarts": 3, "backoffSeconds": 10, "maxBackoffSeconds": 300}
    assert at(spec, "checkpoint.path")["default"] == "/checkpoints"
    assert "default" not in at(spec, "maxWorkers")
    assert spec["required"] == ["template", "maxWorkers"]


def test_trainingjob_bounds_and_enums() -> None:
    spec = root("TrainingJob")["properties"]["spec"]
    assert at(spec, "minWorkers")["minimum"] == 1
    assert at(spec, "maxWorkers")["maximum"] == 1024
    assert at(spec, "ttlSecondsAfterFinished")["minimum"] == 0
    assert at(spec, "activeDeadlineSeconds")["minimum"] == 1
    assert at(spec, "template.imagePullPolicy")["enum"] == ["Always", "IfNotPresent", "Never"]
    status = root("TrainingJob")["properties"]["status"]
    assert at(status, "phase")["enum"] == [
        "Queued",
        "Starting",
        "Running",
        "Rescaling",
        "Succeeded",
        "Failed",
        "Suspended",
    ]
    gpu = at(spec, "template.resources.limits")["additionalProperties"]
    assert gpu["x-kubernetes-int-or-string"] is True


def test_trainingjob_cel_rules() -> None:
    top = root("TrainingJob")
    spec = top["properties"]["spec"]
    assert "self.minWorkers <= self.maxWorkers" in rules(spec)
    assert any("checkpoint.volumeName" in r for r in rules(spec))
    assert any("volumeMounts.all" in r for r in rules(at(spec, "template")))
    assert any("elastic-trainer" in r for r in rules(at(spec, "template")))
    assert any("${params." in r for r in rules(top))
    assert "self.backoffSeconds <= self.maxBackoffSeconds" in rules(at(spec, "failurePolicy"))
    assert any("filter(x, x).size() <= 1" in r for r in rules(at(spec, "checkpoint")))
    for path in ("template.env.[]", "template.volumes.[]", "template.tolerations.[]"):
        assert rules(at(spec, path)), path
    for node in (spec, at(spec, "template")):
        for r in node["x-kubernetes-validations"]:
            assert r["message"]


def test_tuningsweep_cel_rules() -> None:
    spec = root("TuningSweep")["properties"]["spec"]
    param = at(spec, "parameters.[]")
    text = " ".join(rules(param))
    assert "self.low < self.high" in text
    assert "self.low > 0.0" in text
    assert "has(self.values)" in text
    spec_rules = " ".join(rules(spec))
    assert "self.parallelism <= self.maxTrials" in spec_rules
    assert "'grid'" in spec_rules and "has(p.step)" in spec_rules
    assert "trialTemplate.spec.template.args" in spec_rules and "self.parameters.map(q" in spec_rules
    # the trial template is a TrainingJob spec, validated like one
    assert "self.minWorkers <= self.maxWorkers" in rules(at(spec, "trialTemplate.spec"))


def test_list_maps_for_server_side_apply() -> None:
    spec = root("TrainingJob")["properties"]["spec"]
    assert at(spec, "template.env")["x-kubernetes-list-map-keys"] == ["name"]
    assert at(spec, "template.volumes")["x-kubernetes-list-map-keys"] == ["name"]
    status = root("TrainingJob")["properties"]["status"]
    assert at(status, "conditions")["x-kubernetes-list-map-keys"] == ["type"]
    sweep = root("TuningSweep")["properties"]
    assert at(sweep["spec"], "parameters")["x-kubernetes-list-map-keys"] == ["name"]
    assert at(sweep["status"], "trials")["x-kubernetes-list-map-keys"] == ["number"]


def test_names_subresources_and_printer_columns() -> None:
    tj = CRDS["TrainingJob"]["spec"]
    assert tj["names"]["shortNames"] == ["tj"]
    assert tj["scope"] == "Namespaced"
    version = tj["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Workers"] == ".status.workers.current"
    assert columns["Target"] == ".status.workers.target"
    assert columns["Step"] == ".status.progress.step"
    assert columns["Age"] == ".metadata.creationTimestamp"
    ts = CRDS["TuningSweep"]["spec"]
    assert "sweep" in ts["names"]["shortNames"]
    columns = {c["name"]: c["jsonPath"] for c in ts["versions"][0]["additionalPrinterColumns"]}
    assert columns["Trials"] == ".status.trialCounts.total"
    assert columns["Best"] == ".status.bestTrial.value"
    assert columns["Phase"] == ".status.phase"


def test_status_is_documented_as_operator_owned() -> None:
    status = root("TrainingJob")["properties"]["status"]
    assert "operator" in status["description"]
    assert "metadata.generation" in at(status, "rescaleGeneration")["description"]


def test_metadata_only_constrains_name() -> None:
    meta = root("TrainingJob")["properties"]["metadata"]
    assert set(meta["properties"]) == {"name"}
    assert meta["properties"]["name"]["maxLength"] == 52


def test_yaml_is_deterministic_and_parses() -> None:
    first = crdgen.render_all()
    assert first == crdgen.render_all()
    for name, text in first.items():
        doc = yaml.safe_load(text)
        assert doc["kind"] == "CustomResourceDefinition"
        assert name == f"{doc['spec']['group']}_{doc['spec']['names']['plural']}.yaml"


def test_docs_list_every_spec_field() -> None:
    docs = crdgen.docs()
    for kind in CRDS:
        for path, _node in walk(root(kind)["properties"]["spec"]):
            if path and "[]" not in path and ".*" not in path:
                leaf = path.rsplit(".", 1)[-1]
                assert f"| `{leaf}` |" in docs, (kind, path)
    assert "minWorkers must not exceed maxWorkers" in docs


def test_committed_files_match_the_models() -> None:
    assert compare() == [], "run `make crds` and commit the result"


def test_model_schema_matches_crd_spec() -> None:
    assert openapi_schema(TrainingJob)["properties"]["spec"] == root("TrainingJob")["properties"]["spec"]
