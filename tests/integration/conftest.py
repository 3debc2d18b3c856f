"""Fixtures for tests against a real control plane.

By default one local control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok) is
started for the whole session. With ELASTIC_TRAINING_CLUSTER=existing the suite uses the cluster named by
KUBECONFIG instead (kind, or any cluster where kwok runs with tests/../hack/devcluster/kwok-stages.yaml).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.devcluster import ClusterState, DevCluster, FakeNode, binaries, versions
from tests.support.kube import TEST_LABEL, NodeFactory
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    if os.environ.get("ELASTIC_TRAINING_CLUSTER") == "existing":
        kubeconfig = os.environ["KUBECONFIG"]
        state = ClusterState(
            dir=str(tmp_path_factory.mktemp("existing")),
            kubeconfig=kubeconfig,
            server="",
            token="",
            etcd_port=0,
            apiserver_port=0,
            pids={},
            versions=versions(),
        )
        yield DevCluster(state, binaries())
        return
    directory = tmp_path_factory.mktemp("devcluster")
    started = DevCluster.start(directory)
    try:
        started.apply_crds()
        yield started
    finally:
        started.stop()


def _safe_name(text: str, limit: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")


@pytest.fixture
def test_id(request: pytest.FixtureRequest) -> str:
    """A short DNS-safe id unique to this test run, used for namespaces, node names and labels."""
    return f"{_safe_name(request.node.name, 30)}-{uuid.uuid4().hex[:5]}"


@pytest.fixture
def namespace(cluster: DevCluster, test_id: str) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount ready), deleted after the test."""
    name = f"t-{test_id}"[:63].strip("-")
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, f"{TEST_LABEL}={test_id}")
    wait_for(
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=60,
        message=f"default ServiceAccount in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def fake_nodes(cluster: DevCluster, test_id: str) -> Iterator[NodeFactory]:
    """Factory: `fake_nodes(count, gpus=8, **FakeNode fields)` adds Ready kwok nodes labelled with this test's
    id (select them with `{TEST_LABEL: test_id}`) and returns their names; all are removed after the test."""
    created: list[str] = []

    def add(count: int = 1, *, prefix: str = "n", **fields: object) -> list[str]:
        # On an existing cluster kwok must run with hack/devcluster/kwok-stages.yaml and manage nodes labelled
        # elastic.training/fake-node=true (what FakeNode sets).
        names = []
        labels = {TEST_LABEL: test_id, **dict(fields.pop("labels", {}) or {})}  # type: ignore[call-overload]
        for _ in range(count):
            name = f"{prefix}-{test_id}-{len(created)}"[:63].strip("-")
            cluster.add_node(FakeNode(name=name, labels=labels, **fields))  # type: ignore[arg-type]
            created.append(name)
            names.append(name)
        return names

    yield add
    for name in created:
        cluster.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def operator(cluster: DevCluster, namespace: str, test_id: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """The real operator as a subprocess, managing this test's namespace on this test's fake nodes."""
    op = OperatorProcess(
        cluster,
        tmp_path / "operator.log",
        ["--namespaces", namespace, "--node-selector", f"{TEST_LABEL}={test_id}", "--shrink-deadline-s", "5"],
    )
    op.start()
    yield op
    op.stop()
