"""One pod's life on the process node: resolve its spec, run its first container as a host process group, report
status like a kubelet, and honour deletion (SIGTERM to the group, SIGKILL after the grace period, then confirm
the deletion with grace 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hack.processnode import podspec
from hack.processnode.kube import STRATEGIC_MERGE_PATCH, Kube, KubeError, path_part, retrying
from hack.processnode.logs import exit_path, log_path
from hack.processnode.podspec import JSON, ConfigError

log = logging.getLogger("processnode")

FORCE_DELETE_GRACE_S = 1.0  # a pod removed without a graceful deletion still gets SIGTERM, then SIGKILL after this
SHUTDOWN_MESSAGE = "Pod was terminated in response to the process node shutting down."


@dataclass
class NodeContext:
    """What every pod worker needs from its node."""

    kube: Kube
    node_name: str
    host_ip: str
    state_dir: Path
    claims_dir: Path
    gpu_resource: str
    allocate_ip: Callable[[], str]
    forget: Callable[[str], None]

    def pod_dir(self, uid: str) -> Path:
        return self.state_dir / "pods" / uid


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): with the pid it names
    one process even after pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def kill_recorded_group(pod_dir: Path) -> bool:
    """SIGKILL the process group recorded in `<pod_dir>/pid` if that very process still runs (an orphan of an
    agent that died without stopping its pods). Returns whether one was killed."""
    try:
        pid_text, started = (pod_dir / "pid").read_text().split()
    except (OSError, ValueError):
        return False
    pid = int(pid_text)
    if process_start_time(pid) != started:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
        return True
    return False


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def child_base_env() -> dict[str, str]:
    """The agent's environment without its kubeconfig, with the running interpreter's bin directory first on PATH
    (so `python` and the project's console scripts resolve to the virtual environment)."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}" if env.get("PATH") else bindir
    return env


class PodWorker:
    def __init__(self, ctx: NodeContext, pod: JSON) -> None:
        self.ctx = ctx
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.gone = False  # the API object no longer exists
        self.shutdown = False  # the node is stopping
        self._deadline: float | None = None  # monotonic time for SIGKILL, once termination is requested
        self._changed = asyncio.Event()
        self._waiting_message: str | None = None
        self._pid: int | None = None
        self.pod_ip = ""
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    # -- inputs from the node ----------------------------------------------------------------------------------

    def update(self, pod: JSON, *, deleted: bool = False) -> None:
        self.pod = pod
        if deleted:
            self.gone = True
            self.terminate(FORCE_DELETE_GRACE_S)
        elif pod["metadata"].get("deletionTimestamp"):
            self.terminate(float(pod["metadata"].get("deletionGracePeriodSeconds") or 0))
        if self.gone and self.task.done():
            self.ctx.forget(self.uid)

    def terminate(self, grace_s: float) -> None:
        """Stop the pod: SIGTERM now, SIGKILL after `grace_s`. A later, shorter grace period wins."""
        deadline = time.monotonic() + max(grace_s, 0.0)
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline
            self._changed.set()

    def stop_for_shutdown(self, max_grace_s: float) -> None:
        self.shutdown = True
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.terminate(min(grace, max_grace_s))

    @property
    def terminating(self) -> bool:
        return self._deadline is not None

    # -- the life of the pod -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        started = podspec.now_rfc3339()
        try:
            prepared = await self._prepare_until_ready(started)
            if prepared is None:
                return
            argv, env, cwd = prepared
            await self._run_process(argv, env, cwd, started)
        except asyncio.CancelledError:
            if self._pid is not None:
                _killpg(self._pid, signal.SIGKILL)
            raise
        except Exception as exc:
            log.exception("pod %s/%s: the process node failed to run it", self.namespace, self.name)
            if self._pid is not None:
                _killpg(self._pid, signal.SIGKILL)
            await self._finish(
                podspec.terminated_status(
                    self.pod,
                    128,
                    pod_ip=self.pod_ip or None,
                    host_ip=self.ctx.host_ip,
                    started=started,
                    finished=podspec.now_rfc3339(),
                    reason="ProcessNodeError",
                    message=f"{type(exc).__name__}: {exc}",
                    phase="Failed",
                )
            )
        finally:
            if self.gone:
                self.ctx.forget(self.uid)

    async def _prepare_until_ready(self, started: str) -> tuple[list[str], dict[str, str], Path] | None:
        """Resolve the spec, retrying while a Secret or ConfigMap is missing (the pod stays Pending). Returns None
        when the pod ended before it started (failed, deleted or the node stopped)."""
        while True:
            if self.terminating:
                await self._end_unstarted(started)
                return None
            try:
                return await self._prepare()
            except ConfigError as exc:
                if not exc.retry:
                    await self._finish(
                        podspec.terminated_status(
                            self.pod,
                            128,
                            pod_ip=None,
                            host_ip=self.ctx.host_ip,
                            started=started,
                            finished=podspec.now_rfc3339(),
                            reason="CreateContainerConfigError",
                            message=str(exc),
                            phase="Failed",
                        )
                    )
                    return None
                if str(exc) != self._waiting_message:
                    self._waiting_message = str(exc)
                    log.info("pod %s/%s waits: %s", self.namespace, self.name, exc)
                    await self._patch_status(
                        podspec.waiting_status(
                            self.pod, "CreateContainerConfigError", str(exc), self.ctx.host_ip, started
                        )
                    )
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)

    async def _end_unstarted(self, started: str) -> None:
        if self.shutdown and not self.gone:
            await self._patch_status(
                podspec.terminated_status(
                    self.pod,
                    137,
                    pod_ip=None,
                    host_ip=self.ctx.host_ip,
                    started=started,
                    finished=podspec.now_rfc3339(),
                    reason="ContainerStatusUnknown",
                    phase="Failed",
                    pod_reason="Terminated",
                    pod_message=SHUTDOWN_MESSAGE,
                )
            )
        elif not self.gone:
            await self._confirm_deletion()  # deleted while Pending: simply removed

    async def _prepare(self) -> tuple[list[str], dict[str, str], Path]:
        pod = self.pod
        container = pod["spec"]["containers"][0]
        pod_dir = self.ctx.pod_dir(self.uid)
        cwd = pod_dir / "work"
        cwd.mkdir(parents=True, exist_ok=True)
        dirs, ignored = podspec.volume_dirs(pod, pod_dir, self.ctx.claims_dir)
        for note in ignored:
            log.info("pod %s/%s: %s", self.namespace, self.name, note)
        mounts = podspec.container_mounts(container, dirs)
        if not self.pod_ip:
            self.pod_ip = self.ctx.allocate_ip()
        # field refs see the pod as it will be once Running
        seen = {**pod, "status": {**(pod.get("status") or {}), **podspec.addresses(self.pod_ip, self.ctx.host_ip)}}
        spec_env = await podspec.container_env(seen, container, self.ctx.kube.read_data)
        argv = [mounts.substitute(a) for a in podspec.command_line(container, spec_env)]
        env = child_base_env()
        env.update(
            {
                "HOSTNAME": self.name,
                "POD_IP": self.pod_ip,
                "CUDA_VISIBLE_DEVICES": "",  # the node's GPUs are declared, not real: torch runs on CPU
                "ELASTIC_PROCESS_NODE": self.ctx.node_name,
                "ELASTIC_PROCESS_NODE_GPUS": str(podspec.gpu_request(container, self.ctx.gpu_resource)),
                **mounts.env(),
            }
        )
        env.update({k: mounts.substitute(v) for k, v in spec_env.items()})
        return argv, env, cwd

    async def _run_process(self, argv: list[str], env: dict[str, str], cwd: Path, started: str) -> None:
        logfile = log_path(self.ctx.state_dir, self.namespace, self.name)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        exit_path(logfile).unlink(missing_ok=True)
        pod_dir = self.ctx.pod_dir(self.uid)
        with open(logfile, "wb") as out:  # noqa: ASYNC230 - a local file, opened once per pod
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                out.write(f"process node: cannot start {argv[0]!r}: {exc}\n".encode())
                out.flush()
                exit_path(logfile).write_text("128\n")
                await self._finish(
                    podspec.terminated_status(
                        self.pod,
                        128,
                        pod_ip=self.pod_ip,
                        host_ip=self.ctx.host_ip,
                        started=started,
                        finished=podspec.now_rfc3339(),
                        reason="StartError",
                        message=str(exc),
                    )
                )
                return
        pid = self._pid = proc.pid
        (pod_dir / "pid").write_text(f"{pid} {process_start_time(pid)}\n")
        log.info("pod %s/%s: started pid %d on %s: %s", self.namespace, self.name, pid, self.pod_ip, argv)
        container_started = podspec.now_rfc3339()
        running = podspec.running_status(self.pod, self.pod_ip, self.ctx.host_ip, container_started, pid)
        running["startTime"] = started
        status_task = asyncio.create_task(self._patch_status(running))

        exited = asyncio.create_task(proc.wait())
        sent_term = sent_kill = False
        while not exited.done():
            timeout: float | None = None
            if self._deadline is not None:
                if not sent_term:
                    log.info("pod %s/%s: SIGTERM to process group %d", self.namespace, self.name, pid)
                    _killpg(pid, signal.SIGTERM)
                    sent_term = True
                timeout = self._deadline - time.monotonic()
                if timeout <= 0 and not sent_kill:
                    log.info("pod %s/%s: grace period over, SIGKILL", self.namespace, self.name)
                    _killpg(pid, signal.SIGKILL)
                    sent_kill = True
                if sent_kill:
                    timeout = None
            self._changed.clear()
            changed = asyncio.create_task(self._changed.wait())
            await asyncio.wait({exited, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        rc = exited.result()
        _killpg(pid, signal.SIGKILL)  # the main process is gone: so is the rest of its "container"
        self._pid = None
        (pod_dir / "pid").unlink(missing_ok=True)
        exit_code = rc if rc >= 0 else 128 - rc
        exit_path(logfile).write_text(f"{exit_code}\n")
        log.info("pod %s/%s: exited with %d", self.namespace, self.name, exit_code)
        await status_task

        container = self.pod["spec"]["containers"][0]
        message = ""
        if exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(OSError):
                message = podspec.log_tail(logfile.read_bytes())
        shutdown = {"phase": "Failed", "pod_reason": "Terminated", "pod_message": SHUTDOWN_MESSAGE}
        status = podspec.terminated_status(
            self.pod,
            exit_code,
            pod_ip=self.pod_ip,
            host_ip=self.ctx.host_ip,
            started=container_started,
            finished=podspec.now_rfc3339(),
            pid=pid,
            message=message,
            **(shutdown if self.shutdown else {}),
        )
        status["startTime"] = started
        await self._finish(status)

    # -- API calls ---------------------------------------------------------------------------------------------

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{path_part(self.namespace)}/pods/{path_part(self.name)}"

    async def _patch_status(self, status: JSON) -> None:
        if self.gone:
            return
        body = {"metadata": {"uid": self.uid}, "status": status}  # the uid makes a same-named successor safe

        async def patch() -> None:
            await self.ctx.kube.request("PATCH", f"{self._path}/status", body=body, content_type=STRATEGIC_MERGE_PATCH)

        try:
            await retrying(patch)
        except KubeError as exc:
            if exc.status in (404, 409, 422):
                return  # gone, or a new pod of the same name (the uid precondition)
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, exc)
        except Exception as exc:
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, exc)

    async def _finish(self, status: JSON) -> None:
        """Report the terminal status, then confirm a requested deletion (as the kubelet does)."""
        await self._patch_status(status)
        if self.terminating and not self.shutdown and not self.gone:
            await self._confirm_deletion()

    async def _confirm_deletion(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            await retrying(lambda: self.ctx.kube.request("DELETE", self._path, body=body))
        except KubeError as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s/%s: delete failed: %s", self.namespace, self.name, exc)
        except Exception as exc:
            log.warning("pod %s/%s: delete failed: %s", self.namespace, self.name, exc)


def remove_pod_dir(pod_dir: Path) -> None:
    shutil.rmtree(pod_dir, ignore_errors=True)
