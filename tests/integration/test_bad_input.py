"""Fuzzed TrainingJobs against the real API server and operator: each is refused by the API server (kubectl fails
and says why) or reaches the operator, which either reconciles it or marks it Failed with an InvalidSpec
condition naming the field. A good job in the same namespace is admitted all along, and the operator's log shows
no failed planning round."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elastic_operator.k8s.jobs import parse_job
from hack.devcluster import DevCluster
from tests.support.kube import NodeFactory
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for
from tests.unit.fuzz.bad_json import load_examples, mutations, placeholder_anywhere

pytestmark = pytest.mark.cluster

JOB = load_examples("trainingjob-cpu.yaml")[0]
NAMES = itertools.count()


def status_of(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.get_json("trainingjob", name, "-n", namespace)
    return dict(obj.get("status") or {})


def test_fuzzed_jobs_are_refused_or_reconciled_or_marked_invalid(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, operator: OperatorProcess
) -> None:
    fake_nodes(1, gpus=0)
    good = copy.deepcopy(JOB)
    good["metadata"] = {"name": "good"}
    cluster.apply(good, "-n", namespace)

    outcomes: set[str] = set()
    refusals: list[str] = []
    spec_only = copy.deepcopy({k: v for k, v in JOB.items() if k != "metadata"})
    spec_only["spec"]["template"]["workingDir"] = "/workspace"  # one more free-text field the schema cannot check
    cel_checked = ("apiVersion", "kind", "command", "args", "env", "image")  # the API server refuses these itself

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.one_of(st.just(spec_only), mutations(spec_only), placeholder_anywhere(spec_only, cel_checked)))
    def one(raw: Any) -> None:
        name = f"fuzz-{next(NAMES)}"
        obj = {**raw, "metadata": {"name": name}} if isinstance(raw, dict) else {"metadata": {"name": name}}
        text = json.dumps(obj)  # NaN and lone surrogates stay in: kubectl and the server must refuse them
        result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=text, check=False)
        if result.returncode != 0:
            assert result.stderr.strip(), "a refusal says why"
            outcomes.add("refused")
            refusals.append(result.stderr.strip()[:300])
            return
        stored = cluster.get_json("trainingjob", name, "-n", namespace)
        errors = parse_job(stored).errors
        phase = wait_for(
            lambda: status_of(cluster, namespace, name).get("phase"), timeout=60, message=f"{name} reconciled"
        )
        if errors:
            status = status_of(cluster, namespace, name)
            invalid = [c for c in status.get("conditions", []) if c["type"] == "InvalidSpec"]
            assert phase == "Failed" and invalid and errors[0][0] in invalid[0]["message"], (errors, status)
        outcomes.add("invalid" if errors else "reconciled")

    one()
    assert outcomes == {"refused", "invalid", "reconciled"}, (outcomes, refusals)  # every path was taken
    wait_for(
        lambda: status_of(cluster, namespace, "good").get("phase") in ("Starting", "Running"),
        timeout=60,
        message="the good job admitted",
    )
    log = operator.log_path.read_text()
    assert "planning round failed" not in log and "failed; retrying next round" not in log, log[-3000:]
