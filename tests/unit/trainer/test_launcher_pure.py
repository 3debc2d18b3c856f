"""Launcher pieces that need no processes: command lines and configuration."""

from __future__ import annotations

import pytest

from elastic_trainer import contract
from elastic_trainer.launcher import LauncherConfig, torchrun_command, training_args


def test_training_args() -> None:
    assert training_args(["python", "-m", "pkg.mod", "--x", "1"]) == ["-m", "pkg.mod", "--x", "1"]
    assert training_args(["python3", "-u", "train.py", "a"]) == ["train.py", "a"]
    assert training_args(["train.py"]) == ["train.py"]
    assert training_args(["/bin/mytrainer", "--y"]) == ["--no-python", "/bin/mytrainer", "--y"]
    with pytest.raises(ValueError):
        training_args([])
    with pytest.raises(ValueError):
        training_args(["python"])


ENV = {
    contract.ENV_JOB_NAMESPACE: "ns", contract.ENV_JOB_NAME: "j", contract.ENV_JOB_UID: "u",
    contract.ENV_POD_NAME: "p", contract.ENV_REPORT_URL: "http://op", contract.ENV_TOKEN: "t",
    contract.ENV_CHECKPOINT_DIR: "/ck",
}  # fmt: skip


def test_config_from_env_and_torchrun_command() -> None:
    cfg = LauncherConfig.from_env({**ENV, contract.ENV_NPROC_PER_WORKER: "2", "POD_IP": "10.0.0.7"})
    assert cfg.nproc_per_worker == 2 and cfg.local_addr == "10.0.0.7" and cfg.report_interval_s == 5.0
    d = contract.Directive(generation=4, action="run", nnodes=3, rdzv_endpoint="rdzv:29400")
    cmd = torchrun_command(cfg, d, ["python", "-m", "m"])
    assert "--nnodes=3:3" in cmd and "--rdzv-id=u-g4" in cmd and "--max-restarts=0" in cmd
    assert "--rdzv-endpoint=rdzv:29400" in cmd and "--nproc-per-node=2" in cmd and "--local-addr=10.0.0.7" in cmd
    assert any(a.startswith("--rdzv-conf=is_host=false") for a in cmd)
    assert cmd[-2:] == ["-m", "m"]


def test_config_names_missing_variables() -> None:
    with pytest.raises(ValueError, match=contract.ENV_TOKEN):
        LauncherConfig.from_env({k: v for k, v in ENV.items() if k != contract.ENV_TOKEN})


def test_the_launcher_times_its_own_training_pause(tmp_path: object) -> None:
    from elastic_trainer.launcher import Launcher

    now = [100.0]
    cfg = LauncherConfig.from_env({**ENV, contract.ENV_CHECKPOINT_DIR: str(tmp_path)})
    launcher = Launcher(cfg, ["python", "-m", "m"], client=object(), clock=lambda: now[0])  # type: ignore[arg-type]
    state = contract.TrainerState
    launcher._set_state(state.RUNNING)
    assert launcher.build_report().pause_s is None  # first start: nothing was paused
    now[0] = 130.0
    launcher._set_state(state.CHECKPOINTING)  # asked to stop for the next generation
    launcher._set_state(state.WAITING)
    now[0] = 131.5
    launcher._set_state(state.STARTING)
    now[0] = 132.25
    launcher._set_state(state.RUNNING)
    assert launcher.build_report().pause_s == 2.25


def test_the_report_carries_the_remaining_work_the_training_code_published(tmp_path: object) -> None:
    from elastic_trainer.launcher import Launcher

    cfg = LauncherConfig.from_env({**ENV, contract.ENV_CHECKPOINT_DIR: str(tmp_path)})
    launcher = Launcher(cfg, ["python", "-m", "m"], client=object())  # type: ignore[arg-type]
    assert launcher.build_report().remaining_samples is None
    launcher.progress = contract.Progress(step=5, remaining_samples=4096)
    assert launcher.build_report().remaining_samples == 4096
