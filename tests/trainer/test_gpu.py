"""The digits example and the trainer library on a CUDA GPU: one process, torchrun over NCCL, checkpoints that move
between GPU and CPU generations, ranks sharing a GPU, and a launcher's planned restart (the control collectives on a
gloo side group next to NCCL).

Skipped without CUDA: CI has no GPU. Run by hand on a GPU machine with hack/gpu-check.sh (docs/trainer.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from elastic_trainer import checkpoint, device
from elastic_trainer.testing import FakeOperator, free_port, kill_all, spawn_launcher, spawn_rendezvous, wait_for

pytestmark = [
    pytest.mark.trainer,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DIGITS = ["-m", "elastic_trainer.examples.digits"]


def run(cmd: list[str], tmp: Path, *args: str) -> dict[str, Any]:
    """Run the example (``cmd`` is the interpreter or torchrun prefix) to completion; its --result."""
    result = tmp / f"result-{len(list(tmp.glob('result-*')))}.json"
    p = subprocess.run(
        [*cmd, *DIGITS, *args, "--result", str(result)], capture_output=True, text=True, timeout=300, check=False
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    out: dict[str, Any] = json.loads(result.read_text())
    return out


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(free_port())]  # fmt: skip


def starts(step_log: Path) -> list[int]:
    return [int(e["step"]) for e in map(json.loads, step_log.read_text().splitlines()) if e["event"] == "start"]


LEARNED = 0.9
"""Test accuracy after 15 epochs with the defaults is about 0.94 on the CPU (chance: 0.1)."""


def test_one_process_on_cuda_learns_what_the_cpu_learns(tmp_path: Path) -> None:
    gpu = run([sys.executable], tmp_path, "--device", "cuda")
    assert gpu["device"] == "cuda:0" and gpu["backend"] is None and gpu["world"] == 1
    cpu = run([sys.executable], tmp_path, "--device", "cpu")
    assert cpu["device"] == "cpu"
    # the same seed, initial weights and sample order: only float rounding differs (a few test samples at most)
    assert gpu["step"] == cpu["step"]
    assert gpu["accuracy"] >= LEARNED and abs(gpu["accuracy"] - cpu["accuracy"]) <= 0.03, (gpu, cpu)
    assert abs(gpu["best_val_accuracy"] - cpu["best_val_accuracy"]) <= 0.03, (gpu, cpu)


def test_torchrun_over_nccl_with_checkpoints(tmp_path: Path) -> None:
    # distributed: DDP with device_ids, the control flag on the gloo side group each step, the checkpoint barrier
    # and the epoch loss all_reduce over NCCL
    r = run(torchrun(1), tmp_path, "--device", "auto", "--checkpoint-dir", str(tmp_path / "ck"))
    assert (r["device"], r["backend"]) == ("cuda:0", "nccl"), r
    assert r["accuracy"] >= LEARNED, r
    assert checkpoint.latest_step(tmp_path / "ck") == r["step"]


def test_checkpoints_move_between_gpu_and_cpu_generations(tmp_path: Path) -> None:
    """Generations of one job on a GPU (NCCL), then two CPU ranks (gloo), then a GPU again: each resumes exactly
    where the previous one finished, and the job still learns."""
    ck, steps = tmp_path / "ck", tmp_path / "steps.jsonl"
    common = ["--checkpoint-dir", str(ck), "--step-log", str(steps)]
    gpu = run(torchrun(1), tmp_path, "--device", "cuda", "--epochs", "4", *common)
    assert gpu["backend"] == "nccl"
    saved = torch.load(checkpoint.path_for(ck, gpu["step"]), weights_only=True)  # no map_location
    tensors = [*saved["model"].values(), *saved["best"]["model"].values(),
               *(v for s in saved["optimizer"]["state"].values() for v in s.values())]  # fmt: skip
    assert tensors and all(t.device.type == "cpu" for t in tensors if isinstance(t, torch.Tensor))

    cpu = run(torchrun(2), tmp_path, "--device", "cpu", "--epochs", "8", *common)
    assert (cpu["device"], cpu["backend"], cpu["world"]) == ("cpu", "gloo", 2)
    back = run([sys.executable], tmp_path, "--device", "cuda", "--epochs", "15", *common)
    assert back["device"] == "cuda:0"
    assert starts(steps) == [0, gpu["step"], cpu["step"]]
    assert back["epoch"] == 15 and back["accuracy"] >= LEARNED, back


def test_more_ranks_than_gpus_share_them(tmp_path: Path) -> None:
    gpus = torch.cuda.device_count()
    expected = device.choose("cuda", local_rank=0, local_world_size=gpus + 1, cuda_available=True, gpus=gpus)
    r = run(torchrun(gpus + 1), tmp_path, "--device", "cuda", "--epochs", "3")
    assert (r["device"], r["backend"], r["world"]) == ("cuda:0", expected.backend, gpus + 1)
    assert expected.backend == "gloo"
    assert r["accuracy"] > 0.8, r  # 3 epochs: learning, not yet the full 15-epoch accuracy


def test_launcher_planned_restart_on_gpu(tmp_path: Path) -> None:
    """A launcher re-forms the generation (a planned rescale that keeps the members): the prepared generation waits
    at the go gate on the gloo side group while the running one trains over NCCL, the running one stops at an agreed
    step and checkpoints, and the new one resumes exactly there."""
    port = free_port()
    rdzv = spawn_rendezvous(port, tmp_path / "rendezvous.log")
    op = FakeOperator(rdzv_endpoint=f"127.0.0.1:{port}").start()
    steps = tmp_path / "steps.jsonl"
    command = ["python", *DIGITS, "--device", "cuda", "--epochs", "40", "--step-delay", "0.02", "--checkpoint-every",
               "20", "--step-log", str(steps), "--result", str(tmp_path / "result.json")]  # fmt: skip
    pod = spawn_launcher(op, "a", command, tmp_path / "ck", tmp_path / "a.log")
    try:
        g1 = op.open_generation(["a"])
        wait_for(lambda: op.all_in(["a"], "running", g1) and op.max_step() >= 10, 120, "generation 1 training")
        g2 = op.open_generation(["a"])
        wait_for(lambda: op.all_in(["a"], "running", g2), 120, "generation 2 running")
        assert pod.wait(timeout=240) == 0
        assert op.state_of("a") == "succeeded"
        events = [json.loads(line) for line in steps.read_text().splitlines()]
        stopped = [e["step"] for e in events if e["event"] == "stopped" and e["gen"] == g1]
        started = [e["step"] for e in events if e["event"] == "start" and e["gen"] == g2]
        assert stopped and started == stopped, events[-5:]
        result = json.loads((tmp_path / "result.json").read_text())
        assert (result["device"], result["backend"]) == ("cuda:0", "nccl")
        assert result["accuracy"] >= LEARNED and result["epoch"] == 40, result
    except BaseException:
        print((tmp_path / "a.log").read_text()[-5000:])
        raise
    finally:
        kill_all([pod, rdzv])
        op.stop()
