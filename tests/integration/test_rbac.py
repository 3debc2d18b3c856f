"""The operator runs with exactly the RBAC the Helm chart grants, and needs every verb of it: the scenario works as
the chart's ServiceAccount, and fails when one verb it uses is taken away."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack.devcluster import DevCluster
from tests.support.kube import TEST_LABEL, NodeFactory
from tests.support.operator import OperatorProcess
from tests.support.rbac import chart_rules, grant_chart_rules, without_verb
from tests.support.trainers import converge, get_job, job_manifest, workers
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster


def start_operator_as(
    cluster: DevCluster, kubeconfig: Path, namespace: str, test_id: str, log: Path
) -> OperatorProcess:
    op = OperatorProcess(
        cluster, log, ["--namespaces", namespace, "--node-selector", f"{TEST_LABEL}={test_id}"], kubeconfig=kubeconfig
    )
    op.start()
    return op


def test_scenario_runs_as_the_charts_service_account(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, test_id: str, tmp_path: Path
) -> None:
    fake_nodes(1, gpus=4)
    creds = grant_chart_rules(cluster, namespace, tmp_path)
    op = start_operator_as(cluster, creds.kubeconfig, namespace, test_id, tmp_path / "operator.log")
    try:
        cluster.apply(job_manifest("rbac", min_workers=2, max_workers=4), "-n", namespace)
        converge(op, cluster, namespace, "rbac", "Running", 4)
        assert 'elastic_training_apply_errors_total{kind="api"}' not in op.metrics()
    finally:
        op.stop()
        creds.revoke()


def test_without_create_pods_the_operator_cannot_start_workers(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, test_id: str, tmp_path: Path
) -> None:
    fake_nodes(1, gpus=4)
    rules = without_verb(chart_rules(), "", "pods", "create")
    creds = grant_chart_rules(cluster, namespace, tmp_path, rules=rules)
    assert not creds.can_i("create", "pods", namespace)
    assert creds.can_i("watch", "trainingjobs.elastic.training")
    assert creds.can_i("list", "pods")
    op = start_operator_as(cluster, creds.kubeconfig, namespace, test_id, tmp_path / "operator.log")
    try:
        cluster.apply(job_manifest("rbac", min_workers=2, max_workers=4), "-n", namespace)
        wait_for(
            lambda: 'elastic_training_apply_errors_total{kind="api"}' in op.metrics(),
            timeout=60,
            message="the operator to hit a forbidden create",
        )
        assert workers(cluster, namespace, "rbac") == []
        assert get_job(cluster, namespace, "rbac").get("status", {}).get("phase") != "Running"
    finally:
        op.stop()
        creds.revoke()


def test_namespaced_rbac_and_restricted_pod_security(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, test_id: str, tmp_path: Path
) -> None:
    """A Role in the watched namespace only (plus the cluster-wide read of nodes and pods), in a namespace that
    enforces the "restricted" Pod Security Standard: the worker and rendezvous pods the operator renders are
    admitted, and the job runs."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    fake_nodes(1, gpus=4)
    creds = grant_chart_rules(cluster, namespace, tmp_path, watch_namespaces=[namespace])
    assert not creds.can_i("list", "trainingjobs.elastic.training")  # not cluster-wide
    op = start_operator_as(cluster, creds.kubeconfig, namespace, test_id, tmp_path / "operator.log")
    try:
        cluster.apply(job_manifest("restricted", min_workers=2, max_workers=2), "-n", namespace)
        converge(op, cluster, namespace, "restricted", "Running", 2)
        pods = cluster.get_json("pods", "-n", namespace)["items"]
        assert {p["metadata"]["labels"]["elastic.training/role"] for p in pods} == {"worker", "rendezvous"}
    finally:
        op.stop()
        creds.revoke()
