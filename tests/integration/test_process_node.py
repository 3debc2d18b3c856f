"""The dev-only process node on the real control plane: the real scheduler places pods on it and it runs them as
host processes (env, secrets, volumes, loopback pod IPs, exit codes, deletion with SIGTERM/SIGKILL, logs, restart
after a crash). Pods target the node with a node selector and tolerate its test taint, so nothing else lands there."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.devcluster import DevCluster
from hack.processnode import PROCESS_NODE_LABEL, ProcessNode, ProcessNodeConfig, ProcessNodeHandle, spawn_process_node
from hack.processnode.podspec import Mounts, expand, mount_env_name
from tests.support.kube import TEST_LABEL
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

TAINT_KEY = "elastic.training/process-node-test"
REPO = Path(__file__).resolve().parents[2]


def spawn(cluster: DevCluster, name: str, state_dir: Path, **kw: Any) -> ProcessNodeHandle:
    return spawn_process_node(
        name=name, state_dir=state_dir, kubeconfig=cluster.kubeconfig, cpu="4", memory="8Gi",
        labels={TEST_LABEL: name}, taints=[f"{TAINT_KEY}={name}:NoSchedule"], timeout=60, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def node(cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessNodeHandle]:
    handle = spawn(cluster, f"pn-{uuid.uuid4().hex[:6]}", tmp_path_factory.mktemp("process-node"), gpus=2)
    try:
        yield handle
    finally:
        handle.stop()


def pod_manifest(name: str, node: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "ignored.invalid/none:0", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "nodeSelector": {TEST_LABEL: node, PROCESS_NODE_LABEL: "true"},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [container],
            **spec,
        },
    }


def out_volume(path: Path) -> dict[str, Any]:
    return {"name": "out", "hostPath": {"path": str(path), "type": "Directory"}}


def get_pod(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_phase(cluster: DevCluster, namespace: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        pod = get_pod(cluster, namespace, name)
        return pod if pod and pod["status"].get("phase") == phase else None

    found: dict[str, Any] = wait_for(check, timeout=timeout, message=f"pod {name} {phase}")
    return found


def wait_gone(cluster: DevCluster, namespace: str, name: str, timeout: float = 60) -> None:
    wait_for(lambda: get_pod(cluster, namespace, name) is None, timeout=timeout, message=f"pod {name} gone")


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return state


def condition(pod: dict[str, Any], kind: str) -> str | None:
    return next((c["status"] for c in pod["status"].get("conditions") or [] if c["type"] == kind), None)


def logs_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hack.processnode", "logs", *args]


def test_expansion_and_mount_substitution_follow_the_documented_rules() -> None:
    env = {"A": "1", "DIR": "/ckpt/x"}
    assert expand("$(A)-$(B)-$$(A)-$$-$A-$(A", env) == "1-$(B)-$(A)-$-$A-$(A"
    mounts = Mounts({"/ckpt": Path("/h/c"), "/ckpt/deep": Path("/h/d"), "/data": Path("/h/data")})
    cases = {
        "/ckpt": "/h/c",
        "/ckpt/run-1": "/h/c/run-1",
        "/ckpt/deep/x": "/h/d/x",
        "--dir=/ckpt": "--dir=/h/c",
        "ls /ckpt /data; echo": "ls /h/c /h/data; echo",
        "/ckptx /data.bak /x/ckpt /database": "/ckptx /data.bak /x/ckpt /database",
    }
    assert {text: mounts.substitute(text) for text in cases} == cases
    assert mounts.substitute(expand("$(DIR)", env)) == "/h/c/x"
    assert mount_env_name("/checkpoints/run-1") == "ELASTIC_PROCESS_NODE_MOUNT_CHECKPOINTS_RUN_1"


def test_pod_runs_with_its_env_and_volumes_then_succeeds(
    cluster: DevCluster, namespace: str, node: ProcessNodeHandle, tmp_path: Path, test_id: str
) -> None:
    cluster.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cr3t")
    cluster.kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=lr=0.1")
    # a claim bound to a PV the process node ignores: it maps the claim to <state-dir>/claims/<ns>/<claim>
    pv = f"pv-{test_id}"[:63]
    cluster.apply({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv, "labels": {TEST_LABEL: test_id}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                 "hostPath": {"path": "/nonexistent-process-node-ignores-it"},
                 "claimRef": {"namespace": namespace, "name": "ckpt"}},
    })  # fmt: skip
    try:
        cluster.apply({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ckpt"},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": pv,
                     "resources": {"requests": {"storage": "1Gi"}}},
        }, "-n", namespace)  # fmt: skip
        wait_for(
            lambda: cluster.get_json("pvc", "ckpt", "-n", namespace)["status"].get("phase") == "Bound",
            timeout=60, message="claim ckpt Bound",
        )  # fmt: skip
        script = (
            'echo "hello from $(MY_NAME)"; env > /out/env.txt; pwd > /out/cwd.txt; echo saved > /ckpt/marker; '
            "while [ ! -e /out/go ]; do sleep 0.05; done; echo bye"
        )
        env = [
            {"name": "GREETING", "value": "hi"},
            {"name": "EXPANDED", "value": "$(GREETING)-there"},
            {"name": "ESCAPED", "value": "$$(GREETING)"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "LR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "lr"}}},
            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MY_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "MY_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "CKPT_DIR", "value": "/ckpt/run-1"},
        ]
        manifest = pod_manifest(
            "hello", node.name, ["sh", "-c"],
            container={"args": [script], "env": env,
                       "volumeMounts": [{"name": "out", "mountPath": "/out"}, {"name": "ckpt", "mountPath": "/ckpt"},
                                        {"name": "scratch", "mountPath": "/scratch"}]},
            volumes=[out_volume(tmp_path), {"name": "ckpt", "persistentVolumeClaim": {"claimName": "ckpt"}},
                     {"name": "scratch", "emptyDir": {}}],
        )  # fmt: skip
        cluster.apply(manifest, "-n", namespace)

        running = wait_phase(cluster, namespace, "hello", "Running")
        assert running["spec"]["nodeName"] == node.name  # placed by the real scheduler
        status = running["status"]
        ip = status["podIP"]
        assert ip.startswith("127.") and ip != "127.0.0.1", ip
        assert status["podIPs"] == [{"ip": ip}] and status["hostIP"] == "127.0.0.1" and status["startTime"]
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            assert condition(running, kind) == "True", kind
        assert "running" in status["containerStatuses"][0]["state"]
        wait_for((tmp_path / "cwd.txt").exists, timeout=30, message="the pod wrote its env")
        follow = subprocess.Popen(
            logs_cli("--follow", "--state-dir", str(node.state_dir), f"{namespace}/hello"), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        (tmp_path / "go").touch()

        done = wait_phase(cluster, namespace, "hello", "Succeeded")
        assert terminated(done)["exitCode"] == 0 and terminated(done)["reason"] == "Completed"
        assert condition(done, "Ready") == "False"

        env_out = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if "=" in line)
        claim_dir = node.state_dir / "claims" / namespace / "ckpt"
        expected = {
            "POD_IP": ip, "MY_IP": ip, "TOKEN": "s3cr3t", "LR": "0.1", "EXPANDED": "hi-there",
            "ESCAPED": "$(GREETING)", "MY_NAME": "hello", "MY_NAMESPACE": namespace,
            "MY_UID": running["metadata"]["uid"], "MY_NODE": node.name, "CKPT_DIR": f"{claim_dir}/run-1",
            "ELASTIC_PROCESS_NODE_MOUNT_CKPT": str(claim_dir), "ELASTIC_PROCESS_NODE_MOUNT_OUT": str(tmp_path),
        }  # fmt: skip
        assert {k: env_out.get(k) for k in expected} == expected
        assert "KUBECONFIG" not in env_out
        assert (claim_dir / "marker").read_text() == "saved\n"
        scratch = Path(env_out["ELASTIC_PROCESS_NODE_MOUNT_SCRATCH"])
        assert scratch.is_dir() and scratch.is_relative_to(node.state_dir)
        cwd = Path((tmp_path / "cwd.txt").read_text().strip())
        assert cwd.is_relative_to(node.state_dir) and cwd != scratch

        # the log helper: printed whole, and followed until the process ended
        printed = subprocess.run(
            logs_cli("--state-dir", str(node.state_dir), f"{namespace}/hello"), cwd=REPO, capture_output=True,
            text=True, timeout=60, check=True,
        )  # fmt: skip
        assert printed.stdout == "hello from hello\nbye\n"
        followed, _ = follow.communicate(timeout=60)
        assert follow.returncode == 0 and followed == "hello from hello\nbye\n"
    finally:
        cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)


def test_failing_pods_report_their_exit_code(cluster: DevCluster, namespace: str, node: ProcessNodeHandle) -> None:
    cluster.apply(pod_manifest("exit3", node.name, ["sh", "-c", "echo failing >&2; exit 3"]), "-n", namespace)
    cluster.apply(pod_manifest("nocmd", node.name, ["/nonexistent/trainer"]), "-n", namespace)
    failed = wait_phase(cluster, namespace, "exit3", "Failed")
    assert terminated(failed)["exitCode"] == 3 and terminated(failed)["reason"] == "Error"
    assert node.pod_log(namespace, "exit3").read_text() == "failing\n"
    unstartable = wait_phase(cluster, namespace, "nocmd", "Failed")
    assert terminated(unstartable)["exitCode"] == 128 and terminated(unstartable)["reason"] == "StartError"


SERVER = """
import os, socket
s = socket.socket()
s.bind((os.environ["POD_IP"], 29411))
s.listen()
while True:
    c, _ = s.accept()
    c.sendall(os.environ["HOSTNAME"].encode())
    c.close()
"""


def test_pods_listen_on_the_same_port_on_their_own_ip(
    cluster: DevCluster, namespace: str, node: ProcessNodeHandle
) -> None:
    for name in ("server-a", "server-b"):
        cluster.apply(pod_manifest(name, node.name, ["python", "-c", SERVER], terminationGracePeriodSeconds=5),
                      "-n", namespace)  # fmt: skip
    ips = {
        name: wait_phase(cluster, namespace, name, "Running")["status"]["podIP"] for name in ("server-a", "server-b")
    }
    assert len(set(ips.values())) == 2, ips

    def greeting(ip: str) -> str:
        with socket.create_connection((ip, 29411), timeout=5) as conn:
            return conn.recv(100).decode()

    for name, ip in ips.items():
        assert wait_for(functools.partial(greeting, ip), timeout=60, message=f"{name} listening on {ip}") == name
    cluster.kubectl("delete", "pod", "server-a", "server-b", "-n", namespace, "--wait=false")
    for name in ips:
        wait_gone(cluster, namespace, name, timeout=30)


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(
    cluster: DevCluster, namespace: str, node: ProcessNodeHandle, tmp_path: Path
) -> None:
    # `$$$$`: Kubernetes turns `$$` into `$`, so the shell sees `$$` (its pid)
    polite = (
        "trap 'echo TERM > /out/polite-term; exit 0' TERM; echo $$$$ > /out/polite-pid; while :; do sleep 0.1; done"
    )
    stubborn = "trap '' TERM; echo $$$$ > /out/stubborn-pid; while :; do sleep 0.1; done"
    for name, script, grace in (("polite", polite, 30), ("stubborn", stubborn, 3)):
        cluster.apply(
            pod_manifest(name, node.name, ["sh", "-c", script], terminationGracePeriodSeconds=grace,
                         container={"volumeMounts": [{"name": "out", "mountPath": "/out"}]},
                         volumes=[out_volume(tmp_path)]),
            "-n", namespace,
        )  # fmt: skip
    for name in ("polite", "stubborn"):
        wait_phase(cluster, namespace, name, "Running")
        wait_for((tmp_path / f"{name}-pid").exists, timeout=30, message=f"{name} started")
    pids = {name: int((tmp_path / f"{name}-pid").read_text()) for name in ("polite", "stubborn")}

    start = time.monotonic()
    cluster.kubectl("delete", "pod", "polite", "stubborn", "-n", namespace, "--wait=false")
    wait_gone(cluster, namespace, "polite", timeout=20)  # well within its 30 s grace: it handled SIGTERM
    assert (tmp_path / "polite-term").read_text() == "TERM\n"
    wait_gone(cluster, namespace, "stubborn", timeout=30)
    assert time.monotonic() - start >= 2.5, "the SIGTERM-ignoring pod was killed before its 3 s grace period"
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_pending_pod_waits_for_its_secret_and_can_be_deleted(
    cluster: DevCluster, namespace: str, node: ProcessNodeHandle
) -> None:
    env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]
    for name in ("waits", "dropped"):
        cluster.apply(pod_manifest(name, node.name, ["sh", "-c", 'test "$T" = ok'], container={"env": env}),
                      "-n", namespace)  # fmt: skip

    def waiting(name: str) -> bool:
        pod = get_pod(cluster, namespace, name)
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0]["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"

    for name in ("waits", "dropped"):
        wait_for(functools.partial(waiting, name), timeout=60, message=f"{name} waiting for its secret")
    cluster.kubectl("delete", "pod", "dropped", "-n", namespace, "--wait=false")
    wait_gone(cluster, namespace, "dropped", timeout=20)
    cluster.kubectl("create", "secret", "generic", "later", "-n", namespace, "--from-literal=t=ok")
    wait_phase(cluster, namespace, "waits", "Succeeded")


def test_gpu_requests_beyond_the_declared_capacity_stay_pending(
    cluster: DevCluster, namespace: str, node: ProcessNodeHandle
) -> None:
    def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
        limits = {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
        return pod_manifest(name, node.name, ["sh", "-c", 'test "$ELASTIC_PROCESS_NODE_GPUS" = 2'], container=limits)

    cluster.apply(gpu_pod("two", 2), "-n", namespace)
    cluster.apply(gpu_pod("three", 3), "-n", namespace)
    wait_phase(cluster, namespace, "two", "Succeeded")

    def unschedulable() -> bool:
        pod = get_pod(cluster, namespace, "three") or {}
        conditions = pod.get("status", {}).get("conditions") or []
        return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions)

    wait_for(unschedulable, timeout=60, message="pod three Unschedulable")
    pod = get_pod(cluster, namespace, "three")
    assert pod is not None and pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")


def node_ready(cluster: DevCluster, name: str) -> str | None:
    result = cluster.kubectl("get", "node", name, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    conditions = json.loads(result.stdout)["status"].get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == "Ready"), None)


def test_restart_fails_the_pods_of_a_crashed_agent_and_stop_deregisters(
    cluster: DevCluster, namespace: str, tmp_path: Path
) -> None:
    name, state = f"pn-r-{uuid.uuid4().hex[:6]}", tmp_path / "state"
    out = tmp_path / "out"
    out.mkdir()
    first = spawn(cluster, name, state)
    try:
        manifest = pod_manifest("long", name, ["sh", "-c", "echo $$$$ > /out/pid; while :; do sleep 0.1; done"],
                                container={"volumeMounts": [{"name": "out", "mountPath": "/out"}]},
                                volumes=[out_volume(out)])  # fmt: skip
        cluster.apply(manifest, "-n", namespace)
        wait_phase(cluster, namespace, "long", "Running")
        wait_for((out / "pid").exists, timeout=30, message="the pod started")
        pid = int((out / "pid").read_text())
    finally:
        first.kill()  # a crash: the pod's processes outlive the agent
    os.kill(pid, 0)

    second = spawn(cluster, name, state, on_stop="notready")
    try:
        failed = wait_phase(cluster, namespace, "long", "Failed")
        assert failed["status"].get("reason") == "NodeRestarted"
        assert terminated(failed)["reason"] == "ContainerStatusUnknown"
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, message="the orphan killed")
    finally:
        second.stop()
    assert node_ready(cluster, name) == "False"  # on_stop=notready leaves the node, NotReady

    # in a thread this time, on the same node: it becomes Ready again; stopping deletes it
    threaded = ProcessNode(ProcessNodeConfig(name=name, state_dir=state, kubeconfig=cluster.kubeconfig,
                                             labels={TEST_LABEL: name}))  # fmt: skip
    threaded.start(timeout=60)
    try:
        assert node_ready(cluster, name) == "True"
    finally:
        threaded.stop()
    assert node_ready(cluster, name) is None
