"""Real launchers, real torchrun, real gloo on localhost; the test plays the operator (FakeOperator).

Each "pod" is one `elastic-trainer launch` process with its own process tree."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from elastic_trainer.testing import (
    FakeOperator,
    free_port,
    kill_all,
    kill_tree,
    spawn_launcher,
    spawn_rendezvous,
    wait_for,
)

pytestmark = [pytest.mark.trainer, pytest.mark.slow]

CKPT_EVERY = 20
EPOCHS = 80  # long enough that training outlasts the rescales below, even on a loaded machine (17 steps an epoch)


@dataclass
class Job:
    op: FakeOperator
    tmp: Path
    command: list[str]
    pods: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ckpt(self) -> Path:
        return self.tmp / "ckpt"

    def spawn(self, pod: str, **env: str) -> None:
        self.pods[pod] = spawn_launcher(self.op, pod, self.command, self.ckpt, self.tmp / f"{pod}.log", **env)
        wait_for(lambda: self.op.state_of(pod) is not None, 60, f"{pod} to report")

    def generation(self, members: list[str], exiting: tuple[str, ...] = (), timeout: float = 90) -> int:
        g = self.op.open_generation(members, exiting)
        wait_for(lambda: self.op.all_in(members, "running", g), timeout, f"generation {g} {members} running")
        return g

    def steps(self) -> list[dict[str, object]]:
        path = self.tmp / "steps.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def logs(self) -> str:
        return "\n".join(f"--- {p}\n{(self.tmp / f'{p}.log').read_text()[-3000:]}" for p in self.pods)


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    port = free_port()
    rdzv = spawn_rendezvous(port, tmp_path / "rendezvous.log")
    op = FakeOperator(rdzv_endpoint=f"127.0.0.1:{port}").start()
    command = [
        # --device cpu: these "pods" share one host, and on a host with one GPU they would all pick it for NCCL
        "python", "-m", "elastic_trainer.examples.digits", "--device", "cpu", "--epochs", str(EPOCHS),
        "--step-delay", "0.04",
        "--checkpoint-every", str(CKPT_EVERY), "--step-log", str(tmp_path / "steps.jsonl"),
        "--result", str(tmp_path / "result.json"),
    ]  # fmt: skip
    j = Job(op, tmp_path, command)
    try:
        yield j
    except BaseException:
        print(j.logs())
        raise
    finally:
        kill_all([*j.pods.values(), rdzv])
        op.stop()


def test_grow_shrink_loss_grow_reaches_accuracy(job: Job) -> None:
    op = job.op
    job.spawn("a")
    job.spawn("b")
    job.generation(["a", "b"])
    assert op.latest["a"].pause_s is None  # a first start is no pause
    job.spawn("c")
    job.generation(["a", "b", "c"])  # planned grow
    assert all(op.latest[p].pause_s is not None and op.latest[p].pause_s > 0 for p in ("a", "b")), op.latest
    assert op.latest["c"].pause_s is None  # c had not trained before
    job.generation(["a"], exiting=("b", "c"))  # planned shrink to 1
    for pod in ("b", "c"):
        assert job.pods[pod].wait(timeout=60) == 0, f"{pod} leaves with success"
        assert op.state_of(pod) == "exited"
    job.spawn("d")
    job.generation(["a", "d"])  # grow
    before_loss = op.max_step()
    kill_tree(job.pods["a"])  # unplanned: the whole pod, SIGKILL
    wait_for(lambda: job.pods["a"].poll() is not None, 10, "a to die")
    job.generation(["d"])  # the loss: continue alone from the last periodic checkpoint
    job.spawn("e")
    g = job.generation(["d", "e"])  # grow again after the loss
    assert op.all_in(["d", "e"], "running", g)
    for pod in ("d", "e"):
        assert job.pods[pod].wait(timeout=180) == 0
        assert op.state_of(pod) == "succeeded"

    result = json.loads((job.tmp / "result.json").read_text())
    assert result["accuracy"] >= 0.95, result
    assert result["epoch"] == EPOCHS

    # the step counter: +1 per step within a generation; a generation resumes exactly where a planned stop
    # checkpointed, and after the loss no further back than the last periodic checkpoint
    events = job.steps()
    gens = sorted({int(e["gen"]) for e in events})  # type: ignore[call-overload]
    assert len(gens) >= 5, gens
    last_step = 0
    stopped_at: int | None = None
    for gen in gens:
        mine = [e for e in events if e["gen"] == gen]
        start = next(e for e in mine if e["event"] == "start")
        s0 = int(start["step"])  # type: ignore[call-overload]
        if stopped_at is not None:
            assert s0 == stopped_at, f"generation {gen} resumed at {s0}, the previous one stopped at {stopped_at}"
        else:
            assert last_step - CKPT_EVERY < s0 <= last_step or s0 == last_step == 0, (gen, s0, last_step)
        steps = [int(e["step"]) for e in mine if e["event"] == "step"]  # type: ignore[call-overload]
        assert steps == list(range(s0 + 1, s0 + 1 + len(steps))), f"generation {gen} skipped or repeated steps"
        last_step = steps[-1] if steps else s0
        stop = [e for e in mine if e["event"] == "stopped"]
        stopped_at = int(stop[0]["step"]) if stop else None  # type: ignore[call-overload]
    assert before_loss > 0 and op.rejected == 0
    # a resumed rank reports the last completed epoch's metrics (kept in the checkpoint), never a blank 0.0 that
    # a sweep's pruner would read as a terrible intermediate value
    accuracies = [r.report.metrics["accuracy"] for r in op.history() if "accuracy" in r.report.metrics]
    assert accuracies and min(accuracies) > 0.5, sorted(accuracies)[:5]


def test_sigterm_checkpoints_and_exits_and_failure_is_reported(job: Job) -> None:
    op = job.op
    job.spawn("a")
    job.spawn("b", ELASTIC_RDZV_JOIN_TIMEOUT_S="8")
    g = job.generation(["a", "b"])
    wait_for(lambda: op.max_step() >= 5, 60, "some steps")
    job.pods["a"].send_signal(signal.SIGTERM)
    assert job.pods["a"].wait(timeout=60) == 0
    assert op.state_of("a") == "exited"
    # the whole generation stopped at one agreed step, with a checkpoint; b waits for a directive
    wait_for(lambda: op.all_in(["b"], "waiting", g), 30, "b to wait")
    stopped = op.latest["a"].last_checkpoint_step
    assert stopped is not None and op.latest["b"].last_checkpoint_step == stopped
    # a generation that cannot form (its second member never comes) fails with a cause (join timeout)
    op.open_generation(["b", "ghost"])
    wait_for(lambda: op.state_of("b") == "failed", 60, "b to report the failure")
    cause = op.latest["b"].failure_cause or ""
    assert "torchrun exited with code" in cause, cause
