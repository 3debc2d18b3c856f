"""Run the real operator as a subprocess against a test cluster, and play the trainers through its report endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic_operator.reports.tokens import job_token
from hack.devcluster import DevCluster, free_port, wait_for

TOKEN_KEY = b"integration-test-token-key"


@dataclass
class OperatorProcess:
    cluster: DevCluster
    log_path: Path
    args: list[str]
    report_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    kubeconfig: Path | None = None  # run with these credentials instead of the cluster admin's
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        env = self.cluster.env()
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        env["ELASTIC_OPERATOR_TOKEN_KEY"] = TOKEN_KEY.decode()
        cmd = [
            sys.executable, "-m", "elastic_operator",
            "--report-host", "127.0.0.1", "--report-port", str(self.report_port),
            "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
            "--planner-interval-s", "1", "--planner-debounce-s", "0.1", *self.args,
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            wait_for(self._healthy, timeout=timeout, message=f"operator /healthz (log: {self.log_path})")
        except BaseException:
            self.kill()  # never leak an operator that did not come up
            raise

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc.returncode}; log: {self.log_path}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies under the operator."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def report(
        self, namespace: str, job: str, job_uid: str, pod: str, *, token: str | None = None, **fields: Any
    ) -> tuple[int, dict[str, Any]]:
        """POST one trainer report; returns (HTTP status, JSON body)."""
        body = {"namespace": namespace, "job": job, "pod": pod, **fields}
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.report_port}/v1/namespaces/{namespace}/trainingjobs/{job}/reports",
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token if token is not None else job_token(TOKEN_KEY, job_uid)}",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status), json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), json.loads(exc.read() or b"{}")
