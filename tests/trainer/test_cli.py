"""The image's entrypoint, run natively: the `elastic-trainer` console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from elastic_trainer import contract
from elastic_trainer.testing import free_port, kill_all, spawn_rendezvous

pytestmark = pytest.mark.trainer


def entrypoint() -> list[str]:
    exe = Path(sys.executable).parent / "elastic-trainer"
    return [str(exe)] if exe.exists() else [shutil.which("elastic-trainer") or "elastic-trainer"]


def test_launch_names_missing_environment() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [*entrypoint(), "launch", "--", "python", "x.py"], env=env, capture_output=True, text=True, check=False
    )
    assert p.returncode == 2
    assert contract.ENV_TOKEN in p.stderr and contract.ENV_REPORT_URL in p.stderr


def test_launch_needs_a_command() -> None:
    p = subprocess.run([*entrypoint(), "launch", "--"], capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "training command" in p.stderr


def test_rendezvous_serves_a_store(tmp_path: Path) -> None:
    from datetime import timedelta

    from torch.distributed import TCPStore  # type: ignore[attr-defined]

    port = free_port()
    server = spawn_rendezvous(port, tmp_path / "rdzv.log")
    try:
        client = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=10))
        client.set("k", "v")
        assert client.get("k") == b"v"
        server.terminate()
        assert server.wait(timeout=20) == 0
    finally:
        kill_all([server])
