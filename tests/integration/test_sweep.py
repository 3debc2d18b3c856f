"""A TuningSweep on the real control plane: TPE, 20 trials, 4 at a time, ASHA, on fake GPU nodes; the test plays
every trial's trainers through the report endpoint with a known objective of the params (reported per epoch, then
`succeeded`). The operator is SIGKILLed and restarted mid-sweep. Checks: the best trial lands near the optimum,
ASHA stopped bad trials early (through the stop annotation, which the TrainingJob controller honours), and no
trial was lost or repeated (numbers and params unique, exactly maxTrials TrainingJobs)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from hack.devcluster import DevCluster
from tests.support.kube import NodeFactory
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"
EPOCHS = 9
OPTIMUM = (1.0, -0.5)


def loss(x: float, y: float, epoch: int) -> float:
    """The objective: a bowl around OPTIMUM that every trial approaches as it trains."""
    return (x - OPTIMUM[0]) ** 2 + (y - OPTIMUM[1]) ** 2 + 2.0 / epoch


def sweep_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TuningSweep",
        "metadata": {"name": name},
        "spec": {
            "parameters": [
                {"name": "x", "type": "float", "low": -3.0, "high": 3.0},
                {"name": "y", "type": "float", "low": -3.0, "high": 3.0},
            ],
            "objective": {"metric": "loss", "direction": "minimize"},
            "algorithm": {"name": "tpe", "seed": 3, "startupTrials": 6},
            "earlyStopping": {
                "policy": "asha",
                "resource": "epoch",
                "asha": {"minResource": 1, "maxResource": EPOCHS, "reductionFactor": 3},
            },
            "maxTrials": 20,
            "parallelism": 4,
            "maxFailedTrials": 2,
            "trialTemplate": {
                "metadata": {"labels": {"app": "sweep-test"}},
                "spec": {
                    "minWorkers": 1,
                    "maxWorkers": 1,
                    "template": {
                        "image": "registry.invalid/trainer:0",
                        "command": ["python", "-m", "elastic_trainer.examples.digits"],
                        "args": ["--x", "${params.x}", "--y", "${params.y}"],
                        "resources": {"limits": {GPU: "1"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                    },
                    "elasticity": {"rescaleCooldownSeconds": 0},
                },
            },
        },
    }


class Trainers:
    """Plays the trainers of every trial: one epoch per `tick` per running trial."""

    def __init__(self, op: OperatorProcess, cluster: DevCluster, namespace: str, sweep: str) -> None:
        self.op, self.cluster, self.namespace, self.sweep = op, cluster, namespace, sweep
        self.epoch: dict[str, int] = {}
        self.done: set[str] = set()

    def jobs(self) -> list[dict[str, Any]]:
        out = self.cluster.get_json("trainingjobs", "-n", self.namespace, "-l", f"elastic.training/sweep={self.sweep}")
        return list(out["items"])

    def tick(self) -> None:
        pods = self.cluster.get_json("pods", "-n", self.namespace, "-l", "elastic.training/role=worker")["items"]
        by_job: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            if not p["metadata"].get("deletionTimestamp"):
                by_job.setdefault(p["metadata"]["labels"].get("elastic.training/job-name", ""), []).append(p)
        for job in self.jobs():
            name = job["metadata"]["name"]
            status = job.get("status") or {}
            if status.get("phase") in ("Succeeded", "Failed") or name in self.done:
                continue
            params = json.loads(job["metadata"]["annotations"]["elastic.training/trial-params"])
            x, y = float(params["x"]), float(params["y"])
            generation = int(status.get("rescaleGeneration") or 0)
            for pod in by_job.get(name, []):
                self._play(job, pod["metadata"]["name"], generation, x, y)

    def _play(self, job: dict[str, Any], pod: str, generation: int, x: float, y: float) -> None:
        name, uid = job["metadata"]["name"], job["metadata"]["uid"]
        code, directive = self.op.report(self.namespace, name, uid, pod, generation=generation, state="waiting")
        if code != 200:
            return
        action, gen = directive["action"], directive["generation"]
        epoch = self.epoch.get(name, 0)
        if action == "exit":
            self.op.report(self.namespace, name, uid, pod, generation=gen, state="exited", epoch=epoch, step=epoch)
            self._exit(pod)  # the launcher leaves after checkpointing
            return
        if action != "run" or gen == 0:
            return
        epoch += 1
        self.epoch[name] = epoch
        state = "succeeded" if epoch >= EPOCHS else "running"
        self.op.report(
            self.namespace, name, uid, pod, generation=gen, state=state, epoch=epoch, step=epoch * 10,
            samples_per_s=100.0, metrics={"loss": loss(x, y, epoch)},
        )  # fmt: skip
        if state == "succeeded":
            self.done.add(name)
            self._exit(pod)  # training is over: the launcher exits 0 (reports live in operator memory; pods don't)

    def _exit(self, pod: str) -> None:
        """kwok marks the pod Succeeded, as a real worker's pod is once its launcher exits 0."""
        self.cluster.kubectl("annotate", "--overwrite", "pod", pod, "-n", self.namespace,
                             "kwok.elastic.training/exit-code=0", check=False)  # fmt: skip


def get_sweep(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get_json("tuningsweep", name, "-n", namespace)
    return result


def test_tpe_sweep_with_asha_survives_an_operator_kill(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, operator: OperatorProcess
) -> None:
    fake_nodes(2, gpus=2)  # room for exactly 4 one-GPU trials
    cluster.apply(sweep_manifest("bowl"), "-n", namespace)
    trainers = Trainers(operator, cluster, namespace, "bowl")
    killed = False
    deadline = time.monotonic() + 540
    while time.monotonic() < deadline:
        trainers.tick()
        sweep = get_sweep(cluster, namespace, "bowl")
        status = sweep.get("status") or {}
        if not killed and (status.get("trialCounts") or {}).get("total", 0) >= 8:
            operator.kill()  # SIGKILL mid-sweep: no cleanup
            time.sleep(2)  # the trials' jobs carry on without an operator for a moment
            operator.start()
            killed = True
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.3)
    assert killed
    assert status.get("phase") == "Succeeded", json.dumps(status, indent=1)[:4000]

    # nothing lost, nothing repeated
    trials = status["trials"]
    assert [t["number"] for t in trials] == list(range(20))
    assert len({tuple(sorted(t["params"].items())) for t in trials}) == 20
    jobs = trainers.jobs()
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(f"bowl-t{i}" for i in range(20))
    assert status["trialCounts"]["total"] == 20 and status["nextTrialNumber"] == 20
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "TuningSweep" and owner["name"] == "bowl" and owner["uid"] == sweep["metadata"]["uid"]

    # the best trial is near the optimum
    best = status["bestTrial"]
    bx, by = float(best["params"]["x"]), float(best["params"]["y"])
    assert abs(bx - OPTIMUM[0]) < 1.0 and abs(by - OPTIMUM[1]) < 1.0, best
    assert best["value"] == pytest.approx(loss(bx, by, EPOCHS))

    # ASHA stopped bad trials early, through the stop annotation, and they ended cleanly
    pruned = [t for t in trials if t["state"] == "Pruned"]
    assert pruned, "ASHA pruned nothing"
    by_name = {j["metadata"]["name"]: j for j in jobs}
    for t in pruned:
        assert max(int(k) for k in t["intermediate"]) < EPOCHS
        job = by_name[f"bowl-t{t['number']}"]
        assert job["metadata"]["annotations"].get("elastic.training/stop") == "pruned"
        wait_for(
            lambda name=job["metadata"]["name"]: (cluster.get_json("trainingjob", name, "-n", namespace).get("status")
                                                  or {}).get("phase") == "Succeeded",
            timeout=60, message=f"pruned trial {job['metadata']['name']} stopped",
        )  # fmt: skip
    assert all(t["state"] in ("Succeeded", "Pruned") for t in trials)

    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    reasons = {e.get("reason") for e in events if (e.get("regarding") or e.get("involvedObject") or {}).get("kind")
               == "TuningSweep"}  # fmt: skip
    assert {"TrialCreated", "TrialPruned", "TrialSucceeded", "NewBestTrial", "SweepSucceeded"} <= reasons, reasons


def test_invalid_sweep_gets_a_condition_naming_the_field_and_no_trials(
    cluster: DevCluster, namespace: str, fake_nodes: NodeFactory, operator: OperatorProcess
) -> None:
    fake_nodes(1, gpus=2)
    bad = sweep_manifest("bad")
    # the CRD's CEL rules check the first two placeholders of a string; the operator checks every one
    bad["spec"]["trialTemplate"]["spec"]["template"]["args"] = ["--all=${params.x},${params.y},${params.z}"]
    cluster.apply(bad, "-n", namespace)

    def invalid() -> dict[str, Any] | None:
        conditions = (get_sweep(cluster, namespace, "bad").get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "InvalidSpec" and c["status"] == "True"), None)

    condition = wait_for(invalid, timeout=30, message="InvalidSpec condition")
    assert "trialTemplate.spec.template.args[0]" in condition["message"]
    assert "params.z" in condition["message"]
    time.sleep(3)
    assert cluster.get_json("trainingjobs", "-n", namespace)["items"] == []
