"""Rendered pods: restricted by default, owned by the job, workers pinned to the node the policy chose."""

from __future__ import annotations

from elastic_operator.render.pods import JobRef, WorkerTemplate, rendezvous_pod, worker_pod
from elastic_trainer import contract

JOB = JobRef("ns", "job", "uid-1")
TEMPLATE = WorkerTemplate(
    image="img",
    command=("python", "train.py"),
    node_selector={"pool": "gpu"},
    tolerations=({"key": "gpu", "operator": "Exists"},),
    annotations={"a": "b"},
)


def test_worker_and_rendezvous_pods_share_the_safe_defaults() -> None:
    for pod in (
        worker_pod(JOB, TEMPLATE, 3, "n1", "job-w3", "http://op:8080"),
        rendezvous_pod(JOB, TEMPLATE, "r", 29400),
    ):
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert spec["nodeSelector"] == {"pool": "gpu"}
        assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
        assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_worker_is_pinned_runs_under_the_launcher_and_gets_the_contract_env() -> None:
    pod = worker_pod(JOB, TEMPLATE, 3, "n1", "job-w3", "http://op:8080")
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["n1"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["elastic-trainer", "launch", "--"]
    assert container["args"] == ["python", "train.py"]
    names = {e["name"] for e in container["env"]}
    assert {contract.ENV_JOB_UID, contract.ENV_TOKEN, contract.ENV_REPORT_URL, contract.ENV_POD_IP} <= names
    assert pod["metadata"]["labels"]["elastic.training/slot"] == "3"
    assert pod["metadata"]["annotations"] == {"a": "b"}
