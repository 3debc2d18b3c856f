"""The generated CRDs on a real API server: every example is accepted, every manifest of the invalid corpus is
rejected with a message naming the offending field, and `kubectl explain` documents every field of both kinds."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from elastic_operator.api import TrainingJob, TuningSweep, crdgen
from hack.devcluster import DevCluster
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CORPUS = sorted((REPO / "tests" / "integration" / "invalid_manifests").glob("*.yaml"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
MODELS: dict[str, Any] = {"TrainingJob": TrainingJob, "TuningSweep": TuningSweep}
PLURALS = {k.kind: k.plural for k in crdgen.KINDS}


@pytest.fixture(scope="module")
def api_ns(cluster: DevCluster) -> Iterator[str]:
    """One namespace for the module's many objects (a namespace per corpus file would only add minutes)."""
    cluster.apply_crds()
    name = f"api-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_accepted(cluster: DevCluster, api_ns: str, path: Path) -> None:
    result = cluster.kubectl("apply", "-n", api_ns, "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(path.read_text())
    stored = json.loads(
        cluster.kubectl("get", PLURALS[doc["kind"]], doc["metadata"]["name"], "-n", api_ns, "-o", "json").stdout
    )
    # what the server stored (with its defaults) is what the model makes of the example
    assert MODELS[doc["kind"]].model_validate(stored).spec == MODELS[doc["kind"]].model_validate(doc).spec


def expected_field(path: Path) -> str:
    match = re.search(r"^# expect: (\S+)", path.read_text(), re.M)
    assert match, f"{path.name} needs a '# expect: <field>' line"
    return match.group(1)


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_invalid_manifest_rejected_naming_the_field(cluster: DevCluster, api_ns: str, path: Path) -> None:
    field = expected_field(path)
    result = cluster.kubectl("create", "-n", api_ns, "-f", str(path), check=False)
    if result.returncode == 0:  # accepted: clean up, then fail
        cluster.kubectl("delete", "-n", api_ns, "-f", str(path), "--wait=false", check=False)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    # the server names map entries as limits[cpu] and our corpus names the map; both start with the field
    assert field in result.stderr, result.stderr


# --- kubectl explain ------------------------------------------------------------------------------------------------


def _objects(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(explain path, object schema) for every object with fields, arrays of objects included."""
    target = schema.get("items", schema) if schema.get("type") == "array" else schema
    if not target.get("properties"):
        return
    yield path, target
    for name, sub in target["properties"].items():
        if path.endswith(".metadata") or (path.count(".") == 0 and name == "metadata"):
            continue
        yield from _objects(sub, f"{path}.{name}")


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("kind", sorted(PLURALS))
def test_kubectl_explain_documents_every_field(cluster: DevCluster, kind: str) -> None:
    plural = PLURALS[kind]
    wait_for(
        lambda: cluster.kubectl("explain", f"{plural}.spec", check=False).returncode == 0,
        timeout=60,
        message=f"OpenAPI for {plural} published",
    )
    schema = next(k for k in crdgen.KINDS if k.kind == kind)
    root = crdgen.openapi_root(schema)
    checked = 0
    for path, obj in _objects(root, plural):
        out = _words(cluster.kubectl("explain", path).stdout)
        for name, sub in obj["properties"].items():
            if path == plural and name in ("apiVersion", "kind", "metadata"):
                continue
            description = _words(sub["description"])
            assert re.search(rf"\b{re.escape(name)}\b", out), f"{path}: {name} missing from explain"
            # kubectl wraps long text; compare the first words
            assert " ".join(description.split()[:6]) in out, f"{path}.{name}: description not shown"
            checked += 1
    assert checked > 60
