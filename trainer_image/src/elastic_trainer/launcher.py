"""The per-pod supervisor: reports to the operator and runs one torchrun per generation.

Loop (one thread, ticking every 0.1 s, plus one thread forwarding torchrun's stderr):

* report every ELASTIC_REPORT_INTERVAL_S while training, every ELASTIC_WAIT_POLL_S while waiting, and at once on
  every state change; each answer is the pod's Directive;
* ``run`` with a generation never started here: start ``torchrun --nnodes=N:N --rdzv-id=<uid>-g<g>`` against the
  job's rendezvous server (``is_host=false``), ``--max-restarts=0``;
* a higher generation, ``checkpoint-and-wait`` or ``exit`` while training: create the stop file; the ranks agree
  on a step (control.Control), checkpoint, write the "stopped" marker and exit 0; if they do not stop within
  ELASTIC_STOP_TIMEOUT_S, torchrun is terminated (work since the last periodic checkpoint is lost);
* torchrun exit 0 with the marker: ``waiting``; exit 0 without it: ``succeeded`` and the launcher leaves with 0;
  any other exit: ``failed`` with a cause, and the launcher waits for a new generation (a failed generation is never
  re-run). Without a new generation for ELASTIC_FAILURE_GRACE_S it leaves with 1, so the pod fails visibly;
* SIGTERM: checkpoint-and-stop as above, report ``exited``, leave with 0. ``exit`` directive: the same.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from elastic_trainer import checkpoint, contract, control
from elastic_trainer.report import ReportClient, ReportError, read_progress

log = logging.getLogger("elastic_trainer.launcher")

TICK_S = 0.1
TERM_GRACE_S = 5.0  # after SIGTERM to torchrun, SIGKILL everything left this much later


@dataclass(frozen=True)
class LauncherConfig:
    namespace: str
    name: str
    uid: str
    pod: str
    report_url: str
    token: str
    checkpoint_dir: str
    nproc_per_worker: int = 1
    report_interval_s: float = 5.0
    wait_poll_s: float = 0.5
    stop_timeout_s: float = 30.0
    failure_grace_s: float = 180.0
    join_timeout_s: float = 60.0
    local_addr: str | None = None
    work_dir: str | None = None  # control directories live here (default: a fresh temp dir)
    warm_agent: bool = True  # keep a torchrun agent process with torch imported, ready for the next generation

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LauncherConfig:
        e = os.environ if env is None else env
        missing = [s.name for s in contract.WORKER_ENV if s.required and not e.get(s.name)]
        if missing:
            raise ValueError(f"missing environment: {', '.join(missing)}")

        def opt(name: str) -> str:
            return e.get(name) or contract.DEFAULTS[name]

        return cls(
            namespace=e[contract.ENV_JOB_NAMESPACE],
            name=e[contract.ENV_JOB_NAME],
            uid=e[contract.ENV_JOB_UID],
            pod=e[contract.ENV_POD_NAME],
            report_url=e[contract.ENV_REPORT_URL],
            token=e[contract.ENV_TOKEN],
            checkpoint_dir=e[contract.ENV_CHECKPOINT_DIR],
            nproc_per_worker=int(opt(contract.ENV_NPROC_PER_WORKER)),
            report_interval_s=float(opt(contract.ENV_REPORT_INTERVAL_S)),
            wait_poll_s=float(opt(contract.ENV_WAIT_POLL_S)),
            stop_timeout_s=float(opt(contract.ENV_STOP_TIMEOUT_S)),
            failure_grace_s=float(opt(contract.ENV_FAILURE_GRACE_S)),
            join_timeout_s=float(opt(contract.ENV_RDZV_JOIN_TIMEOUT_S)),
            local_addr=e.get(contract.ENV_POD_IP) or e.get("POD_IP") or None,
            warm_agent=opt(contract.ENV_WARM_AGENT) not in ("0", "false", "no"),
        )


# A torchrun that has imported torch already and waits for its arguments and environment on stdin: starting a
# generation then costs no interpreter start and no `import torch` (seconds on a small CPU).
WARM_AGENT = """\
import json, os, sys
import torch.distributed.run as run
line = sys.stdin.readline()
if not line:
    sys.exit(0)
req = json.loads(line)
os.environ.clear()
os.environ.update(req["env"])
sys.argv = ["torchrun", *req["argv"]]
run.main(req["argv"])
"""


def torchrun_command(cfg: LauncherConfig, d: contract.Directive, command: Sequence[str]) -> list[str]:
    """The torchrun invocation for one generation (fixed size, fresh rendezvous id, external store)."""
    return [sys.executable, "-m", "torch.distributed.run", *torchrun_args(cfg, d, command)]


def torchrun_args(cfg: LauncherConfig, d: contract.Directive, command: Sequence[str]) -> list[str]:
    jt = max(1, int(cfg.join_timeout_s))
    cmd = [
        f"--nnodes={d.nnodes}:{d.nnodes}",
        f"--nproc-per-node={cfg.nproc_per_worker}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={d.rdzv_endpoint}",
        f"--rdzv-id={d.rendezvous_id(cfg.uid)}",
        f"--rdzv-conf=is_host=false,join_timeout={jt},last_call_timeout=1,read_timeout={jt}",
        "--max-restarts=0",
        "--monitor-interval=0.1",
    ]  # fmt: skip
    if cfg.local_addr:
        cmd.append(f"--local-addr={cfg.local_addr}")
    return cmd + training_args(command)


def training_args(command: Sequence[str]) -> list[str]:
    """`python [-u] -m mod args` -> `-m mod args`; `python script.py` / `script.py` -> script; else --no-python."""
    args = list(command)
    if not args:
        raise ValueError("no training command")
    if Path(args[0]).name.startswith("python"):
        args = args[1:]
        while args and args[0] == "-u":  # torchrun's workers are unbuffered anyway (PYTHONUNBUFFERED)
            args = args[1:]
        if not args:
            raise ValueError("no training script or module after the interpreter")
        if args[0] == "-m":
            return ["-m", *args[1:]]
        return args
    if args[0].endswith(".py"):
        return args
    return ["--no-python", *args]


def descendants(pid: int) -> list[int]:
    """Every process below pid (torchrun's workers may live in sessions of their own)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *descendants(k)]
    return out


@dataclass
class _Generation:
    generation: int
    nnodes: int
    proc: subprocess.Popen[bytes]
    control_dir: Path
    started: float
    stderr_tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    stop_requested_at: float | None = None
    terminated_at: float | None = None
    killed: bool = False
    reader: threading.Thread | None = None
    retired_at: float | None = None

    def ready(self) -> bool:
        """Its process group is up and its code honours the go gate (it waits for go before loading)."""
        return control.is_ready(self.control_dir)

    def training(self) -> bool:
        return self.ready() or (self.control_dir / contract.CONTROL_PROGRESS_FILE).exists()


def _count(value: int) -> int:
    """A counter from the training code's progress, within what a report may hold (the operator refuses a report
    with a negative or huge step rather than write it into status)."""
    return min(max(value, 0), contract.MAX_COUNT)


def _throughput(value: float) -> float:
    """Training code may report an infinite or NaN throughput (a zero-length timing window): it reads as 0."""
    return value if math.isfinite(value) and value >= 0 else 0.0


class Launcher:
    """See the module docstring. ``current`` trains; ``next`` is a generation prepared while ``current`` still
    trains (started, rendezvoused, waiting for go); ``retiring`` have stopped on request and are exiting."""

    def __init__(
        self,
        cfg: LauncherConfig,
        command: Sequence[str],
        client: ReportClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.command = list(command)
        training_args(self.command)  # validate early
        self.client = client or ReportClient(cfg.report_url, cfg.namespace, cfg.name, cfg.token)
        self.clock = clock
        self.work_dir = Path(cfg.work_dir or tempfile.mkdtemp(prefix="elastic-trainer-"))
        self.state = contract.TrainerState.STARTING
        self.generation = 0  # acted on (reported)
        self.last_started = 0  # highest generation a torchrun was started for (a generation never runs twice)
        self.current: _Generation | None = None
        self.next: _Generation | None = None
        self.retiring: list[_Generation] = []
        self.warm: tuple[subprocess.Popen[bytes], collections.deque[str], threading.Thread] | None = None
        self.directive: contract.Directive | None = None
        self.progress = contract.Progress()
        self.last_checkpoint_step = checkpoint.latest_step(cfg.checkpoint_dir)
        self.failure_cause: str | None = None
        self.failed_at: float | None = None
        self.leaving_since: float | None = None  # exit directive or SIGTERM: leave once training stopped
        self.stopped_training_at: float | None = None  # when this pod last left `running` (the pause's start)
        self.pause_s: float | None = None  # how long training stood still before the current generation ran
        self.terms = 0
        self.next_report = 0.0
        self.report_failures = 0

    # -- state and reports ---------------------------------------------------------------------------------------

    def _set_state(self, state: contract.TrainerState, cause: str | None = None) -> None:
        if state != self.state or cause != self.failure_cause:
            first = f": {cause.splitlines()[0]}" if cause else ""
            log.info("%s: %s -> %s (generation %d)%s", self.cfg.pod, self.state, state, self.generation, first)
            running = contract.TrainerState.RUNNING
            if self.state == running and state != running:
                self.stopped_training_at = self.clock()
            elif state == running and self.stopped_training_at is not None:
                self.pause_s = max(0.0, self.clock() - self.stopped_training_at)
                self.stopped_training_at = None
                log.info("%s: training resumed after a %.2fs pause", self.cfg.pod, self.pause_s)
            self.state = state
            self.failure_cause = cause
            self.next_report = 0.0  # report at once

    def build_report(self) -> contract.Report:
        p = self.progress
        return contract.Report(
            namespace=self.cfg.namespace,
            job=self.cfg.name,
            pod=self.cfg.pod,
            generation=self.generation,
            state=self.state,
            step=_count(p.step),
            epoch=_count(p.epoch),
            samples_per_s=_throughput(p.samples_per_s) if self.state == contract.TrainerState.RUNNING else 0.0,
            world_size=_count(p.world_size),
            metrics={k: v for k, v in p.metrics.items() if math.isfinite(v)},
            last_checkpoint_step=self.last_checkpoint_step,
            failure_cause=self.failure_cause[-2000:] if self.failure_cause else None,
            pause_s=self.pause_s,
            remaining_samples=None if p.remaining_samples is None else _count(p.remaining_samples),
        )

    def _report(self, now: float) -> None:
        interval = self.cfg.wait_poll_s if self.current is None else self.cfg.report_interval_s
        try:
            self.directive = self.client.post(self.build_report())
            self.report_failures = 0
        except ReportError as exc:
            self.report_failures += 1
            if self.report_failures in (1, 10) or self.report_failures % 100 == 0:
                log.warning("%s: %s (failure %d)", self.cfg.pod, exc, self.report_failures)
            interval = min(interval * 2 ** min(self.report_failures, 4), 10.0)
        self.next_report = now + interval

    def _final_report(self) -> None:
        for attempt in range(5):
            try:
                self.client.post(self.build_report())
                return
            except ReportError as exc:
                log.warning("%s: final report failed: %s", self.cfg.pod, exc)
                time.sleep(0.2 * 2**attempt)

    # -- torchrun ------------------------------------------------------------------------------------------------

    def _spawn(self, d: contract.Directive, now: float, go: bool) -> _Generation:
        cdir = self.work_dir / f"g{d.generation}"
        shutil.rmtree(cdir, ignore_errors=True)
        cdir.mkdir(parents=True)
        if go:
            control.give_go(cdir)
        env = {k: v for k, v in os.environ.items() if k != contract.ENV_TOKEN}  # training never sees the token
        env.update({
            contract.ENV_CONTROL_DIR: str(cdir),
            contract.ENV_GENERATION: str(d.generation),
            contract.ENV_NNODES: str(d.nnodes),
            contract.ENV_CHECKPOINT_DIR: self.cfg.checkpoint_dir,
        })  # fmt: skip
        proc, tail, reader = self._agent(env, torchrun_args(self.cfg, d, self.command))
        log.info("%s: %s generation %d: torchrun %s", self.cfg.pod, "starting" if go else "preparing", d.generation,
                 " ".join(torchrun_args(self.cfg, d, self.command)))  # fmt: skip
        g = _Generation(d.generation, d.nnodes, proc, cdir, now, tail, reader=reader)
        self.last_started = d.generation
        return g

    def _agent(
        self, env: dict[str, str], args: list[str]
    ) -> tuple[subprocess.Popen[bytes], collections.deque[str], threading.Thread]:
        """A torchrun process for these arguments: the warm one when there is one, else a fresh one."""
        warm, self.warm = self.warm, None
        if warm is not None and warm[0].poll() is None and warm[0].stdin is not None:
            try:
                warm[0].stdin.write((json.dumps({"env": env, "argv": args}) + "\n").encode())
                warm[0].stdin.close()
                return warm
            except OSError:
                self._kill_proc(warm[0])
        proc = subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", *args], env=env, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        return (proc, *self._forwarder(proc))

    def _forwarder(self, proc: subprocess.Popen[bytes]) -> tuple[collections.deque[str], threading.Thread]:
        tail: collections.deque[str] = collections.deque(maxlen=40)
        reader = threading.Thread(target=_forward, args=(proc.stderr, tail), daemon=True)
        reader.start()
        return tail, reader

    def _warm_up(self) -> None:
        """Start the next warm agent (only while training runs, so it never competes with a start-up)."""
        if not self.cfg.warm_agent or self.warm is not None:
            return
        env = {k: v for k, v in os.environ.items() if k != contract.ENV_TOKEN}
        proc = subprocess.Popen(
            [sys.executable, "-c", WARM_AGENT], env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        self.warm = (proc, *self._forwarder(proc))

    def _kill_proc(self, proc: subprocess.Popen[bytes]) -> None:
        for pid in [*descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _promote(self, g: _Generation) -> None:
        control.give_go(g.control_dir)
        self.current = g
        self.generation = g.generation
        self.failed_at = None
        self._set_state(contract.TrainerState.STARTING)

    def _request_stop(self, now: float, why: str) -> None:
        g = self.current
        if g is None or g.stop_requested_at is not None:
            return
        g.stop_requested_at = now
        if not g.training():
            # still in rendezvous or start-up: nothing to checkpoint, and it could not see the stop file anyway
            log.info("%s: generation %d has not started training; terminating it (%s)", self.cfg.pod,
                     g.generation, why)  # fmt: skip
            self._terminate(g, now)
        else:
            log.info("%s: asking generation %d to checkpoint and stop (%s)", self.cfg.pod, g.generation, why)
            control.request_stop(g.control_dir)
        self._set_state(contract.TrainerState.CHECKPOINTING)

    def _terminate(self, g: _Generation, now: float) -> None:
        if g.terminated_at is None:
            g.terminated_at = now
            with contextlib.suppress(ProcessLookupError):
                g.proc.send_signal(signal.SIGTERM)

    def _escalate(self, g: _Generation, now: float) -> None:
        if g.stop_requested_at is not None and g.terminated_at is None:
            if now - g.stop_requested_at > self.cfg.stop_timeout_s:
                log.warning("%s: generation %d did not stop in %.0fs; terminating", self.cfg.pod, g.generation,
                            self.cfg.stop_timeout_s)  # fmt: skip
                self._terminate(g, now)
        elif g.terminated_at is not None and not g.killed and now - g.terminated_at > TERM_GRACE_S:
            self._kill(g)

    def _kill(self, g: _Generation) -> None:
        g.killed = True
        self._kill_proc(g.proc)

    def _drop_next(self) -> None:
        if self.next is not None:
            self._kill(self.next)
            self.next.proc.wait()
            self._cleanup(self.next)
            self.next = None

    def _cleanup(self, g: _Generation) -> None:
        for pid in descendants(g.proc.pid):  # no worker outlives its torchrun
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if g.reader is not None:
            g.reader.join(timeout=2.0)
        shutil.rmtree(g.control_dir, ignore_errors=True)

    def _end_of_current(self, now: float) -> bool:
        """Notice that the current generation stopped (marker) or exited. True: training succeeded, leave."""
        g = self.current
        if g is None:
            return False
        self._read_progress(g)
        stopped = control.read_stopped(g.control_dir)
        rc = g.proc.poll()
        failed = control.read_failed(g.control_dir) if stopped is None and rc is None else None
        if failed is not None:  # a rank failed: torchrun would take seconds to notice and tear down
            self._kill(g)
            rc = g.proc.wait()
            g.stderr_tail.append(f"rank failure: {failed}")
        if stopped is None and rc is None:
            self._escalate(g, now)
            return False
        self.current = None
        if stopped is not None:  # checkpointed on request; the processes may still be exiting
            self.last_checkpoint_step = max(stopped, self.last_checkpoint_step or 0)
            g.retired_at = now
            self.retiring.append(g)
            self._set_state(contract.TrainerState.WAITING)
        else:
            self._cleanup(g)
            self.last_checkpoint_step = checkpoint.latest_step(self.cfg.checkpoint_dir) or self.last_checkpoint_step
            if rc == 0:
                self._set_state(contract.TrainerState.SUCCEEDED)
                return True
            self.failed_at = now
            self._set_state(contract.TrainerState.FAILED, self._failure(g, rc))
        if self.next is not None:  # the prepared generation takes over from the checkpoint just written
            nxt, self.next = self.next, None
            self._promote(nxt)
        return False

    def _failure(self, g: _Generation, rc: int | None) -> str:
        if g.terminated_at is not None and g.stop_requested_at is not None:
            cause = f"generation {g.generation} did not stop within {self.cfg.stop_timeout_s:.0f}s; terminated"
        else:
            cause = f"torchrun exited with code {rc} in generation {g.generation}"
        tail = _cause_lines(g.stderr_tail)
        return f"{cause}\n{tail}" if tail else cause

    def _tend_others(self, now: float) -> None:
        for g in list(self.retiring):
            if g.proc.poll() is not None or now - (g.retired_at or now) > self.cfg.stop_timeout_s:
                if g.proc.poll() is None:
                    self._kill(g)
                self._cleanup(g)
                self.retiring.remove(g)
        n = self.next
        if n is None:
            return
        if (rc := n.proc.poll()) is not None:
            log.warning("%s: prepared generation %d failed before taking over: %s", self.cfg.pod, n.generation,
                        self._failure(n, rc))  # fmt: skip
            self._cleanup(n)
            self.next = None
        elif self.current is not None and n.ready():
            self._request_stop(now, f"generation {n.generation} is ready")

    def _read_progress(self, g: _Generation) -> None:
        p = read_progress(g.control_dir)
        if p is None or p.generation != g.generation:
            return
        if (p.step, p.timestamp) != (self.progress.step, self.progress.timestamp):
            self.progress = p
            if p.last_checkpoint_step is not None:
                self.last_checkpoint_step = max(p.last_checkpoint_step, self.last_checkpoint_step or 0)
            if self.state == contract.TrainerState.STARTING:
                self._set_state(contract.TrainerState.RUNNING)

    # -- the loop ------------------------------------------------------------------------------------------------

    def _on_term(self, signum: int, _frame: FrameType | None) -> None:
        self.terms += 1

    def _act(self, now: float) -> int | None:
        """Act on the latest directive. Returns an exit code when the launcher should leave."""
        d = self.directive
        if self.terms and self.leaving_since is None:
            self.leaving_since = now - self.cfg.stop_timeout_s  # SIGTERM: stop at once
        if self.terms > 1 and self.current is not None and not self.current.killed:
            self._kill(self.current)
        if d is not None and d.action == contract.Action.EXIT and self.leaving_since is None:
            # a shrink (nnodes > 0): the remaining pods stop this generation once their next one is ready;
            # stop it ourselves only if that does not happen in time. Nobody left: stop at once.
            self.leaving_since = now if d.nnodes > 0 else now - self.cfg.stop_timeout_s
        if self.leaving_since is not None:
            self._drop_next()
            if self.current is None:
                if self.state != contract.TrainerState.FAILED:
                    self._set_state(contract.TrainerState.EXITED)
                return 0
            if now - self.leaving_since >= self.cfg.stop_timeout_s or not self.current.training():
                self._request_stop(now, "leaving")
            return None
        if d is None:
            return None
        g = self.current
        if g is not None:
            if d.action == contract.Action.CHECKPOINT_AND_WAIT:
                self._request_stop(now, "checkpoint-and-wait")
            elif d.action == contract.Action.RUN and d.generation > self.last_started and d.runnable:
                if g.ready() and g.stop_requested_at is None:
                    self._drop_next()  # a prepared generation superseded before it took over
                    self.next = self._spawn(d, now, go=False)  # overlap: the current one stops when it is ready
                else:
                    self._request_stop(now, f"generation {d.generation} with {d.nnodes} pods")
            return None
        if d.runnable and d.generation > self.last_started:
            self._promote(self._spawn(d, now, go=True))
            return None
        if self.state == contract.TrainerState.STARTING and d.action == contract.Action.CHECKPOINT_AND_WAIT:
            self._set_state(contract.TrainerState.WAITING)
        if self.failed_at is not None and now - self.failed_at > self.cfg.failure_grace_s:
            log.error("%s: no new generation within %.0fs of a failure; giving up", self.cfg.pod,
                      self.cfg.failure_grace_s)  # fmt: skip
            return 1
        return None

    def run(self) -> int:
        old = {s: signal.signal(s, self._on_term) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._loop()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            for g in [self.current, self.next, *self.retiring]:
                if g is not None and g.proc.poll() is None:
                    self._kill(g)
            if self.warm is not None:
                self._kill_proc(self.warm[0])
            if self.cfg.work_dir is None:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def _loop(self) -> int:
        self._warm_up()
        while True:
            now = self.clock()
            if self.state == contract.TrainerState.RUNNING and self.next is None:
                self._warm_up()
            if self._end_of_current(now):
                self._final_report()
                return 0
            self._tend_others(now)
            if now >= self.next_report:
                self._report(now)
            code = self._act(now)
            if code is not None:
                self._final_report()
                return code
            if self.next_report == 0.0:
                continue  # a state change: report at once
            time.sleep(TICK_S)


def _forward(stream: IO[bytes] | None, tail: collections.deque[str]) -> None:
    if stream is None:
        return
    for raw in iter(stream.readline, b""):
        with contextlib.suppress(OSError):
            sys.stderr.buffer.write(raw)
            sys.stderr.buffer.flush()
        tail.append(raw.decode(errors="replace").rstrip())
    stream.close()


def _cause_lines(tail: Sequence[str]) -> str:
    """The most telling lines of torchrun's stderr: exceptions and errors, else the last few lines."""
    keys = ("Error", "error:", "Exception", "Traceback", "exitcode", "Signal", "signal")
    picked = [line for line in tail if any(k in line for k in keys)]
    return "\n".join((picked or list(tail))[-8:])
