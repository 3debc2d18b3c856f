"""Start a process node as a subprocess (`python -m hack.processnode run ...`) and wait until it is Ready."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from hack.processnode.logs import log_path
from hack.processnode.node import READY_FILE
from hack.processnode.runner import kill_recorded_group

REPO = Path(__file__).resolve().parents[2]


class ProcessNodeHandle:
    """A process node agent running as a subprocess. `stop()` shuts it down gracefully (its pods get SIGTERM,
    are reported Failed, and the node is deleted or left NotReady); `kill()` is a crash (SIGKILL: the node and its
    pods stay as they were in the API; the pods' processes keep running until an agent starts again on the same
    state dir, or `kill_orphans()`)."""

    def __init__(self, name: str, state_dir: Path, process: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.state_dir = state_dir
        self.process = process
        self.agent_log = state_dir / "agent.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def pod_log(self, namespace: str, pod: str) -> Path:
        return log_path(self.state_dir, namespace, pod)

    def agent_log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.agent_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the agent and wait; SIGKILL it (and the pods' processes) if it takes longer than `timeout`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.kill_orphans()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the agent only, as if it crashed."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()

    def kill_orphans(self) -> int:
        """SIGKILL the process groups of pods this agent started that still run. Returns how many."""
        return sum(kill_recorded_group(d) for d in (self.state_dir / "pods").glob("*"))

    def __enter__(self) -> ProcessNodeHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def spawn_process_node(
    *,
    name: str,
    state_dir: Path,
    kubeconfig: str | os.PathLike[str] | None = None,
    gpus: int = 0,
    cpu: str = "8",
    memory: str = "16Gi",
    pods: int = 110,
    labels: Mapping[str, str] | None = None,
    taints: Iterable[str] = (),
    claims_dir: Path | None = None,
    on_stop: str = "delete",
    ip_block: int | None = None,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    timeout: float = 60.0,
    verbose: bool = True,
    exit_with_parent: bool = True,
) -> ProcessNodeHandle:
    """Start `python -m hack.processnode run ...` in its own session (output to `<state_dir>/agent.log`) and
    return once the node is Ready and schedulable. `taints` are `key=value:Effect` strings. The child gets `env`
    (default: this process's environment), so pods see it too. With `exit_with_parent` (the default) the agent
    stops by itself, gracefully, once this process has ended (say, a test run that was killed)."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / READY_FILE).unlink(missing_ok=True)
    args = [
        python,
        "-m",
        "hack.processnode",
        "run",
        "--name",
        name,
        "--state-dir",
        str(state_dir),
        "--gpus",
        str(gpus),
        "--cpu",
        cpu,
        "--memory",
        memory,
        "--pods",
        str(pods),
        "--on-stop",
        on_stop,
    ]
    if kubeconfig is not None:
        args += ["--kubeconfig", str(kubeconfig)]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    for taint in taints:
        args += ["--taint", taint]
    if claims_dir is not None:
        args += ["--claims-dir", str(claims_dir)]
    if ip_block is not None:
        args += ["--ip-block", str(ip_block)]
    if exit_with_parent:
        args.append("--exit-with-parent")
    if verbose:
        args.append("--verbose")
    child_env = dict(env if env is not None else os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), child_env.get("PYTHONPATH", "")) if p)
    with open(state_dir / "agent.log", "ab") as out:
        process = subprocess.Popen(
            args,
            cwd=REPO,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = ProcessNodeHandle(name, state_dir, process)
    deadline = time.monotonic() + timeout
    ready = state_dir / READY_FILE
    while True:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(ready.read_text()).get("pid") == process.pid:
                return handle
        if not handle.alive():
            raise RuntimeError(
                f"process node {name} exited ({process.returncode}) while starting:\n{handle.agent_log_tail()}"
            )
        if time.monotonic() > deadline:
            handle.stop(10)
            raise TimeoutError(f"process node {name} not Ready after {timeout:.0f}s:\n{handle.agent_log_tail()}")
        time.sleep(0.1)
