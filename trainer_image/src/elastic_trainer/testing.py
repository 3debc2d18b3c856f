"""Test and benchmark support: a stand-in operator (report endpoint on loopback) and process helpers.

``FakeOperator`` speaks the real HTTP contract (path, bearer token, Report in, Directive out); the test plays the
operator's lifecycle by calling ``open_generation(members)``. ``spawn_launcher`` starts a real
``elastic-trainer launch`` process as one "pod"; ``spawn_rendezvous`` the job's rendezvous server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from elastic_trainer import contract
from elastic_trainer.launcher import descendants

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Callable[[], T], timeout: float, what: str = "condition", interval: float = 0.1) -> T:
    """Poll pred until it returns something truthy; raise TimeoutError naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Received:
    time: float
    report: contract.Report


@dataclass
class FakeOperator:
    namespace: str = "default"
    name: str = "job"
    uid: str = "uid-1"
    token: str = "secret-token"
    rdzv_endpoint: str = ""
    generation: int = 0
    members: tuple[str, ...] = ()
    exiting: set[str] = field(default_factory=set)
    reports: list[Received] = field(default_factory=list)
    latest: dict[str, contract.Report] = field(default_factory=dict)
    rejected: int = 0
    on_report: Callable[[FakeOperator, contract.Report], None] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    _server: ThreadingHTTPServer | None = None

    # -- the operator's decisions --------------------------------------------------------------------------------

    def open_generation(self, members: Iterable[str], exiting: Iterable[str] = ()) -> int:
        with self.lock:
            self.generation += 1
            self.members = tuple(members)
            self.exiting |= set(exiting)
            return self.generation

    def directive_for(self, pod: str) -> contract.Directive:
        with self.lock:
            if pod in self.exiting:
                action = contract.Action.EXIT
            elif pod in self.members and self.rdzv_endpoint:
                action = contract.Action.RUN
            else:
                action = contract.Action.CHECKPOINT_AND_WAIT
            return contract.Directive(
                generation=self.generation,
                action=action,
                nnodes=len(self.members),
                rdzv_endpoint=self.rdzv_endpoint,
                rdzv_id=f"{self.uid}-g{self.generation}",
                members=list(self.members),
            )

    # -- queries -------------------------------------------------------------------------------------------------

    def state_of(self, pod: str) -> str | None:
        with self.lock:
            r = self.latest.get(pod)
            return None if r is None else str(r.state)

    def all_in(self, pods: Iterable[str], state: str, generation: int | None = None) -> bool:
        with self.lock:
            return all(
                (r := self.latest.get(p)) is not None
                and r.state == state
                and (generation is None or r.generation == generation)
                for p in pods
            )

    def max_step(self) -> int:
        with self.lock:
            return max((r.report.step for r in self.reports), default=0)

    def history(self) -> list[Received]:
        with self.lock:
            return list(self.reports)

    # -- HTTP ----------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeOperator:
        op = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Mapping[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != contract.report_path(op.namespace, op.name):
                    self._send(404, {"error": "no such job"})
                    return
                if self.headers.get("Authorization") != contract.auth_header(op.token)["Authorization"]:
                    with op.lock:
                        op.rejected += 1
                    self._send(401, {"error": "unauthorized"})
                    return
                try:
                    r = contract.Report.model_validate_json(raw)
                except ValidationError as exc:
                    self._send(400, {"error": str(exc)})
                    return
                with op.lock:
                    op.reports.append(Received(time.time(), r))
                    op.latest[r.pod] = r
                    if op.on_report is not None:
                        op.on_report(op, r)
                    d = op.directive_for(r.pod)
                self._send(200, d.model_dump(mode="json"))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeOperator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- processes ---------------------------------------------------------------------------------------------------


def launcher_env(op: FakeOperator, pod: str, checkpoint_dir: str | Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIC_")}
    env.update({
        contract.ENV_JOB_NAMESPACE: op.namespace,
        contract.ENV_JOB_NAME: op.name,
        contract.ENV_JOB_UID: op.uid,
        contract.ENV_POD_NAME: pod,
        contract.ENV_REPORT_URL: op.url,
        contract.ENV_TOKEN: op.token,
        contract.ENV_CHECKPOINT_DIR: str(checkpoint_dir),
        contract.ENV_REPORT_INTERVAL_S: "1",
        contract.ENV_WAIT_POLL_S: "0.25",
        "OMP_NUM_THREADS": "1",
    })  # fmt: skip
    env.update(extra)
    return env


def spawn_launcher(
    op: FakeOperator, pod: str, command: Sequence[str], checkpoint_dir: str | Path, log: Path, **extra_env: str
) -> subprocess.Popen[bytes]:
    """One "pod": ``elastic-trainer launch -- command`` in a session of its own, output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "elastic_trainer.cli", "launch", "--", *command],
            env=launcher_env(op, pod, checkpoint_dir, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def spawn_rendezvous(port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "elastic_trainer.cli", "rendezvous", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def listening() -> bool:
        if p.poll() is not None:
            raise RuntimeError(f"rendezvous server exited with {p.returncode}; see {log}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 60, "the rendezvous server")
    return p


def kill_tree(p: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal a process and everything below it (a pod's whole process tree)."""
    for pid in [p.pid, *descendants(p.pid)] if sig == signal.SIGKILL else [p.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def kill_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            kill_tree(p)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)
