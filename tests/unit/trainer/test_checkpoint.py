"""Checkpoints: atomic replace, pruning, and a crash while writing leaves the previous one loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from elastic_trainer import checkpoint
from elastic_trainer.testing import wait_for


def test_save_load_prune(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        checkpoint.save({"w": [step]}, step, tmp_path, keep=2, rank=0, barrier=False)
    assert checkpoint.list_steps(tmp_path) == [30, 40]
    state = checkpoint.load_latest(tmp_path)
    assert state is not None and state["step"] == 40 and state["w"] == [40]
    assert checkpoint.save({"w": 1}, 50, tmp_path, rank=1, barrier=False) is None  # only rank 0 writes
    assert checkpoint.latest_step(tmp_path) == 40
    assert checkpoint.load_latest(tmp_path / "missing") is None


def test_damaged_newest_falls_back_to_previous(tmp_path: Path) -> None:
    checkpoint.save({"w": 1}, 1, tmp_path, rank=0, barrier=False)
    checkpoint.path_for(tmp_path, 2).write_bytes(b"torn")  # e.g. a filesystem without atomic rename
    state = checkpoint.load_latest(tmp_path)
    assert state is not None and state["step"] == 1


def test_failed_write_leaves_no_file_under_a_final_name(tmp_path: Path) -> None:
    checkpoint.save({"w": 1}, 1, tmp_path, rank=0, barrier=False)

    def boom(_f: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoint.write_atomic(checkpoint.path_for(tmp_path, 2), boom)
    assert sorted(os.listdir(tmp_path)) == [checkpoint.path_for(tmp_path, 1).name]


WRITER = textwrap.dedent(
    """
    import os, sys, torch
    from elastic_trainer import checkpoint
    d = sys.argv[1]
    checkpoint.save({"w": torch.zeros(4)}, 1, d, rank=0, barrier=False)
    real_fsync = os.fsync
    def slow_fsync(fd):  # the big write is done; hang before the rename so the parent can kill us mid-write
        open(os.path.join(d, "writing"), "w").close()
        import time; time.sleep(60)
    os.fsync = slow_fsync
    checkpoint.save({"w": torch.ones(2_000_000)}, 2, d, rank=0, barrier=False)
    """
)


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
    try:
        wait_for((tmp_path / "writing").exists, 60, "the writer to be mid-write")
        assert any(n.startswith(checkpoint.TMP_PREFIX) for n in os.listdir(tmp_path)), "a partial temp file exists"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert checkpoint.list_steps(tmp_path) == [1]
    state = checkpoint.load_latest(tmp_path)
    assert state is not None and state["step"] == 1 and state["w"].shape == (4,)
