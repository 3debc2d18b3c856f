"""The "checkpoint and stop" hook between a launcher and its training processes.

The launcher asks for a stop by creating ``$ELASTIC_CONTROL_DIR/stop``. Ranks of different pods would see that
file at different steps, and a rank that leaves while its peers enter the next collective hangs them. So the ranks
*agree*: ``Control.should_stop(step)`` is a collective (one all_reduce(MAX) of a one-element tensor, every
``check_every`` steps) and returns the same answer on every rank at the same step. Any pod's request stops the whole
generation at one step boundary; the training code then checkpoints and calls ``stopped(step)``, which tells the
launcher "stopped on request after checkpointing step n" (exit code 0 without that marker means "training done").

    ctl = Control()
    dist.init_process_group(...)
    ctl.wait_for_go()                      # before loading the checkpoint
    state = checkpoint.load_latest()
    for step in ...:
        train_step()
        if ctl.should_stop(step):
            checkpoint.save(state, step)
            ctl.stopped(step)
            return

Outside a launcher (no ELASTIC_CONTROL_DIR) nothing is ever requested, but ``should_stop`` stays a collective so
all ranks run the same program.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from elastic_trainer import contract

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup


def _go_timeout() -> float:
    e = os.environ.get
    stop = float(e(contract.ENV_STOP_TIMEOUT_S) or contract.DEFAULTS[contract.ENV_STOP_TIMEOUT_S])
    return stop + 60.0


def _pg_timeout() -> float:
    """The job's process-group timeout (a hung peer is detected within it), for the gloo side group too."""
    return float(os.environ.get(contract.ENV_PG_TIMEOUT_S) or contract.DEFAULTS[contract.ENV_PG_TIMEOUT_S])


def control_dir() -> Path | None:
    d = os.environ.get(contract.ENV_CONTROL_DIR)
    return Path(d) if d else None


def rescale_requested() -> bool:
    """This pod's launcher asks for checkpoint-and-stop (local, not agreed: use Control.should_stop in loops)."""
    d = control_dir()
    return d is not None and (d / contract.CONTROL_STOP_FILE).exists()


def request_stop(d: str | os.PathLike[str]) -> None:
    """Launcher side: ask the training processes to checkpoint and stop."""
    (Path(d) / contract.CONTROL_STOP_FILE).touch()


def read_failed(d: str | os.PathLike[str]) -> str | None:
    """Launcher side: why a rank of this generation failed (written by Control.fail_fast), or None."""
    try:
        return (Path(d) / contract.CONTROL_FAILED_FILE).read_text() or "a rank failed"
    except OSError:
        return None


def read_stopped(d: str | os.PathLike[str]) -> int | None:
    """Launcher side: the step training stopped at on request, or None (not stopped on request)."""
    try:
        return int(json.loads((Path(d) / contract.CONTROL_STOPPED_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_ready(d: str | os.PathLike[str]) -> bool:
    return (Path(d) / contract.CONTROL_READY_FILE).exists()


def give_go(d: str | os.PathLike[str]) -> None:
    """Launcher side: let a prepared generation load the checkpoint and train."""
    (Path(d) / contract.CONTROL_GO_FILE).touch()


class Control:
    def __init__(self, check_every: int | None = None) -> None:
        raw = os.environ.get(contract.ENV_STOP_CHECK_EVERY) or contract.DEFAULTS[contract.ENV_STOP_CHECK_EVERY]
        self.check_every = max(1, check_every if check_every is not None else int(raw))
        self.dir = control_dir()
        self._cpu_group: ProcessGroup | None = (
            None  # a gloo side group when the default backend cannot reduce CPU tensors
        )
        self._cpu_group_ready = False

    def should_stop(self, step: int) -> bool:
        """Collective: call on every rank after each step. True on all ranks, at the same step, once any rank's
        launcher asked for a stop."""
        if step % self.check_every != 0:
            return False
        local = rescale_requested()
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return local
        t = torch.tensor([1 if local else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.cpu_group())
        return bool(t.item())

    def cpu_group(self) -> ProcessGroup | None:
        """The process group for the control collectives, which use CPU tensors: None (the default group) when its
        backend is gloo, else (NCCL, or a mixed "cpu:gloo,cuda:nccl" group, which monitored_barrier refuses) a
        gloo group over all ranks, made once (``new_group`` is itself a collective, which
        is fine: every rank calls ``should_stop``/``wait_for_go`` at the same points). With NCCL as the default
        backend, a CPU tensor cannot be reduced on the default group, and staging the flag through the GPU would
        synchronise the stream every step; the gloo flag costs no GPU work."""
        if not self._cpu_group_ready:
            import torch.distributed as dist

            if str(dist.get_backend()) != "gloo":
                group = dist.new_group(backend="gloo", timeout=timedelta(seconds=_pg_timeout()))
                assert isinstance(group, dist.ProcessGroup), group  # every rank is a member
                self._cpu_group = group
            self._cpu_group_ready = True
        return self._cpu_group

    def wait_for_go(self, timeout_s: float | None = None) -> None:
        """Call once on every rank after init_process_group and before loading the checkpoint.

        Tells the launcher that this generation is up (``ready``) and waits for its ``go``: a launcher starts the
        next generation while the current one still trains, and gives ``go`` once the current one has stopped and
        checkpointed, so a planned rescale costs no process start-up. Then a barrier: every pod's previous
        generation has stopped, the newest checkpoint is the one to load. No-op outside a launcher.
        """
        if self.dir is None:
            return
        limit = timeout_s if timeout_s is not None else _go_timeout()
        if os.environ.get("LOCAL_RANK", "0") == "0":
            (self.dir / contract.CONTROL_READY_FILE).touch()
        deadline = time.monotonic() + limit
        while not (self.dir / contract.CONTROL_GO_FILE).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no go from the launcher within {limit:.0f}s")
            time.sleep(0.02)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            # monitored_barrier is gloo-only: the side group (kept for should_stop) when the default is NCCL
            dist.monitored_barrier(group=self.cpu_group(), timeout=timedelta(seconds=limit), wait_all_ranks=True)

    @contextlib.contextmanager
    def fail_fast(self) -> Iterator[None]:
        """Wrap the training loop: on any exception (a lost peer shows up as a gloo/NCCL error in a collective),
        tell the launcher at once and leave with os._exit(1) instead of a slow interpreter and process-group
        teardown, so the next generation starts seconds earlier."""
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, SystemExit) and not exc.code:
                raise
            traceback.print_exc()
            if self.dir is not None:
                with contextlib.suppress(OSError):
                    (self.dir / contract.CONTROL_FAILED_FILE).write_text(f"{type(exc).__name__}: {exc}"[:2000])
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)

    def stopped(self, step: int) -> None:
        """Tell the launcher that training stopped on request after checkpointing ``step`` (local rank 0 writes)."""
        if self.dir is None or os.environ.get("LOCAL_RANK", "0") != "0":
            return
        tmp = self.dir / f".{contract.CONTROL_STOPPED_FILE}.tmp"
        tmp.write_text(json.dumps({"step": step}))
        os.replace(tmp, self.dir / contract.CONTROL_STOPPED_FILE)
