"""The elastic story, for real, on one machine: a real API server and scheduler, the real operator, one dev-only
process node whose pods are host processes running real torch (the digits example), real checkpoints.

On a 4-GPU process node (fake GPUs, real processes):

1. `warmup` (2 workers, fixed) runs; `base` (2..4 workers) arrives and starts with the 2 GPUs left;
2. `warmup` finishes and `base` grows into the freed GPUs (2 -> 4);
3. `urgent` (priority 10, 2 workers) arrives: `base` shrinks to 2, its leaving workers checkpoint first;
4. with `sweep=True`, a small TuningSweep on digits arrives while `urgent` runs: its trials are TrainingJobs in the
   same queue and take the GPUs `urgent` frees, next to `base`;
5. everything trains to the end; each rescale's training pause is measured by the operator.

The digits workers simulate accelerator time per sample (`--sample-delay`), so more workers are faster, as on GPUs;
the learning itself is real. Used by `make demo` (all of it) and tests/integration/test_real_training.py (without
the sweep).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.devcluster import DevCluster, wait_for
from hack.processnode import spawn_process_node
from tests.support.operator import OperatorProcess

NAMESPACE = "demo"
SAMPLE_DELAY = "0.003"  # simulated accelerator seconds per sample of a rank's batch
TERMINAL = ("Succeeded", "Failed")


def _digits_command(epochs: int) -> list[str]:
    return ["python", "-m", "elastic_trainer.examples.digits", "--epochs", str(epochs), "--sample-delay", SAMPLE_DELAY]


def _template(command: list[str], args: list[str] | None = None) -> dict[str, Any]:
    return {
        "image": "local/trainer:dev",  # ignored by the process node
        "command": command,
        **({"args": args} if args else {}),
        "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
    }


def digits_job(name: str, lo: int, hi: int, epochs: int, workdir: Path, priority: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "minWorkers": lo,
            "maxWorkers": hi,
            "priority": priority,
            "elasticity": {"rescaleCooldownSeconds": 0},
            "template": _template(_digits_command(epochs)),
            "checkpoint": {"hostPath": str(workdir / f"checkpoints-{name}"), "path": "/checkpoints"},
        },
    }


def digits_sweep(name: str, trials: int, epochs: int, workdir: Path) -> dict[str, Any]:
    """A small random-search sweep over the learning rate and width; one worker per trial, two trials at a time."""
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TuningSweep",
        "metadata": {"name": name},
        "spec": {
            "parameters": [
                {"name": "lr", "type": "float", "low": 0.01, "high": 0.5, "log": True},
                {"name": "hidden", "type": "int", "low": 16, "high": 128, "log": True},
            ],
            # selected on the validation split (the best epoch's model is kept); test accuracy is only reported
            "objective": {"metric": "best_val_accuracy", "direction": "maximize"},
            "algorithm": {"name": "random", "seed": 3},
            "maxTrials": trials,
            "parallelism": 2,
            "trialTemplate": {
                "spec": {
                    "minWorkers": 1,
                    "maxWorkers": 1,
                    "template": _template(
                        _digits_command(epochs), ["--lr", "${params.lr}", "--hidden", "${params.hidden}"]
                    ),
                    "checkpoint": {"hostPath": str(workdir / f"checkpoints-{name}"), "path": "/checkpoints"},
                }
            },
        },
    }


@dataclass
class Story:
    rows: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def snapshot(self, cluster: DevCluster) -> list[dict[str, Any]]:
        items = cluster.get_json("trainingjobs", "-n", NAMESPACE)["items"]
        out = []
        for item in items:
            s = item.get("status", {})
            progress = s.get("progress") or {}
            out.append(
                {
                    "t": round(time.monotonic() - self.t0, 1),
                    "job": item["metadata"]["name"],
                    "phase": s.get("phase", ""),
                    "workers": (s.get("workers") or {}).get("current", 0),
                    "step": progress.get("step"),
                    "accuracy": (progress.get("metrics") or {}).get("accuracy"),
                    "decision": (s.get("lastDecision") or {}).get("reason", "")[:60],
                    "rescales": s.get("rescales") or {},
                }
            )
        self.rows.extend(out)
        return out


def _operator_events(cluster: DevCluster) -> list[tuple[str, str, str, str]]:
    """(time, object, reason, message) of the operator's own events, oldest first."""
    items = json.loads(cluster.kubectl("get", "events.events.k8s.io", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    events = [
        (
            str(e.get("eventTime") or e.get("deprecatedLastTimestamp") or ""),
            str((e.get("regarding") or {}).get("name", "")),
            str(e.get("reason", "")),
            str(e.get("note") or ""),
        )
        for e in items
        if e.get("reportingController") == "elastic.training/operator"
    ]
    return sorted(events)


def run(
    workdir: Path, show: Callable[[list[dict[str, Any]]], None] = lambda rows: None, *, sweep: bool = False
) -> dict[str, Any]:
    """Run the story in `workdir`; returns a summary (final status of each job and sweep, events, timeline rows)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = DevCluster.start(workdir / "cluster")
    node = op = None
    story = Story()
    try:
        cluster.apply_crds()
        cluster.kubectl("create", "namespace", NAMESPACE)
        wait_for(
            lambda: cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0,
            timeout=60,
            message="default ServiceAccount",
        )
        node = spawn_process_node(
            name="process-node-0",
            state_dir=workdir / "node",
            kubeconfig=cluster.kubeconfig,
            gpus=4,
            cpu="8",
            memory="16Gi",
            labels={"elastic.training/demo": "true"},
        )
        op = OperatorProcess(
            cluster,
            workdir / "operator.log",
            ["--namespaces", NAMESPACE, "--node-selector", "elastic.training/demo=true"],
        )
        op.start()
        story.t0 = time.monotonic()

        def job(name: str) -> dict[str, Any]:
            status: dict[str, Any] = cluster.get_json("trainingjob", name, "-n", NAMESPACE).get("status", {})
            return status

        def until(what: str, cond: Callable[[], bool], timeout: float) -> None:
            def check() -> bool:
                show(story.snapshot(cluster))
                return cond()

            wait_for(check, timeout=timeout, interval=2, message=what)

        def workers(name: str) -> int:
            return int((job(name).get("workers") or {}).get("current", 0))

        cluster.apply(digits_job("warmup", 2, 2, 3, workdir), "-n", NAMESPACE)
        until("warmup Running", lambda: job("warmup").get("phase") == "Running", 180)
        cluster.apply(digits_job("base", 2, 4, 30, workdir), "-n", NAMESPACE)
        until("base Running with 2 workers", lambda: job("base").get("phase") == "Running", 180)
        until("warmup finished", lambda: job("warmup").get("phase") in TERMINAL, 300)
        until(
            "base grown to 4 workers",
            lambda: (
                job("base").get("phase") in TERMINAL or (job("base").get("phase") == "Running" and workers("base") == 4)
            ),
            300,
        )
        cluster.apply(digits_job("urgent", 2, 2, 16, workdir, priority=10), "-n", NAMESPACE)
        until("urgent Running", lambda: job("urgent").get("phase") in ("Running", *TERMINAL), 300)
        sweep_status: dict[str, Any] = {}
        if sweep:  # its trials queue behind urgent and take the GPUs urgent frees (queued jobs come before growth)
            cluster.apply(digits_sweep("sweep", trials=4, epochs=4, workdir=workdir), "-n", NAMESPACE)
        until("urgent finished", lambda: job("urgent").get("phase") in TERMINAL, 400)
        if sweep:

            def sweep_done() -> bool:
                sweep_status.clear()
                sweep_status.update(cluster.get_json("tuningsweep", "sweep", "-n", NAMESPACE).get("status", {}))
                return sweep_status.get("phase") in TERMINAL

            until("sweep finished", sweep_done, 600)
        until("base finished", lambda: job("base").get("phase") in TERMINAL, 600)
        final = {
            j["metadata"]["name"]: j.get("status", {})
            for j in cluster.get_json("trainingjobs", "-n", NAMESPACE)["items"]
        }
        return {
            "final": final,
            "sweep": sweep_status,
            "events": _operator_events(cluster),
            "rows": story.rows,
            "seconds": round(time.monotonic() - story.t0, 1),
        }
    finally:
        if op is not None:
            op.stop()
        if node is not None:
            node.stop()
        cluster.stop()


def pauses(summary: dict[str, Any]) -> list[tuple[str, float]]:
    """(job, seconds) of every measured rescale pause, from the operator's Running events."""
    out = []
    for _, name, reason, note in summary["events"]:
        if reason == "Running" and "training pause" in note:
            out.append((name, float(note.rsplit(" after a ", 1)[1].split("s training pause")[0])))
    return out
