"""The process node agent: registers a Node, keeps it Ready (status heartbeat and a Lease in kube-node-lease),
watches the pods bound to it and runs each as host processes (see runner.py)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from hack.processnode import podspec
from hack.processnode.kube import MERGE_PATCH, STRATEGIC_MERGE_PATCH, Kube, KubeError, path_part, retrying
from hack.processnode.podspec import JSON
from hack.processnode.runner import NodeContext, PodWorker, kill_recorded_group, remove_pod_dir

log = logging.getLogger("processnode")

PROCESS_NODE_LABEL = "elastic.training/process-node"
GPU_RESOURCE = "nvidia.com/gpu"
HOST_IP = "127.0.0.1"
LEASE_NAMESPACE = "kube-node-lease"
SCHEDULING_BLOCKERS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
READY_FILE = "ready"


@dataclass
class ProcessNodeConfig:
    name: str
    state_dir: Path
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config
    cpu: str = "8"
    memory: str = "16Gi"
    pods: int = 110
    gpus: int = 0  # declared `nvidia.com/gpu` capacity: fake GPUs; pods see CUDA_VISIBLE_DEVICES=""
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[JSON] = field(default_factory=list)  # e.g. {"key": "k", "value": "v", "effect": "NoSchedule"}
    claims_dir: Path | None = None  # root of the persistentVolumeClaim dirs; default <state_dir>/claims
    on_stop: Literal["delete", "notready"] = "delete"
    ip_block: int | None = None  # pod IPs 127.<block>.x.y; None: the first block no other agent on this host holds
    lease_duration_s: int = 40
    lease_renew_s: float = 10.0
    status_heartbeat_s: float = 30.0
    stop_grace_s: float = 10.0  # at most this long for pods' SIGTERM handlers when the agent stops
    parent_pid: int | None = None  # stop (gracefully) once this process is no longer our parent

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        self.claims_dir = Path(self.claims_dir).resolve() if self.claims_dir else self.state_dir / "claims"
        if PROCESS_NODE_LABEL in self.labels and self.labels[PROCESS_NODE_LABEL] != "true":
            raise ValueError(f"label {PROCESS_NODE_LABEL} is reserved")
        if self.labels.get("elastic.training/fake-node") == "true":
            raise ValueError("a process node must not carry elastic.training/fake-node=true (kwok would manage it)")


class IpBlock:
    """A /16 of loopback, 127.<block>.0.0, held by one agent on this host through a file lock (released when the
    agent's process ends), so that several process nodes on one machine never hand out the same pod IP. Block 0
    (127.0.0.0/16: the host's own 127.0.0.1, Debian's 127.0.1.1) is never used. On Linux every address in
    127.0.0.0/8 is routed to the loopback interface and can be bound without configuration."""

    def __init__(self, preferred: int | None) -> None:
        lock_dir = Path(tempfile.gettempdir()) / f"elastic-process-node-{os.getuid()}"
        lock_dir.mkdir(exist_ok=True)
        candidates = [preferred] if preferred is not None else list(range(1, 255))
        for block in candidates:
            if not 1 <= block <= 254:
                raise ValueError(f"ip block must be within 1..254, not {block}")
            handle: IO[bytes] = open(lock_dir / f"block-{block}.lock", "ab")  # noqa: SIM115 - held while we run
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.block, self._handle = block, handle
            # Addresses are not reused across agent runs either (a socket in TIME_WAIT on a previous pod's
            # address would make a new pod's bind fail): the next index lives beside the lock, which we hold.
            self._counter = lock_dir / f"block-{block}.next"
            try:
                self._next = int(self._counter.read_text()) % (256 * 254)
            except (OSError, ValueError):
                self._next = 0
            return
        raise RuntimeError(f"no free loopback block for pod IPs ({candidates}): other process nodes hold them")

    def allocate(self) -> str:
        """The next address of the block, 127.<block>.0.1 up to 127.<block>.255.254, then around again."""
        k = self._next
        self._next = (k + 1) % (256 * 254)
        self._counter.write_text(f"{self._next}\n")
        return f"127.{self.block}.{k // 254}.{k % 254 + 1}"

    def release(self) -> None:
        self._handle.close()


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class ProcessNode:
    """A dev-only node agent that runs pods as host processes: NO isolation, for the demo and tests only.

    Async: `await node.run(stop_event)`. In a background thread: `node.start()` (returns once the node is Ready
    and schedulable) and `node.stop()`. Prefer `spawn_process_node()` (a subprocess) where isolation matters.
    """

    def __init__(self, config: ProcessNodeConfig) -> None:
        self.config = config
        self.workers: dict[str, PodWorker] = {}
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._node_uid = ""
        self._transition_time = ""
        self._ctx: NodeContext | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def node_path(self) -> str:
        return f"/api/v1/nodes/{path_part(self.name)}"

    # -- thread API --------------------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Run the agent in a background thread; return once the node is Ready and schedulable."""
        self._thread = threading.Thread(target=self._thread_main, name=f"process-node-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if not self._thread.is_alive():
                raise RuntimeError(f"process node {self.name} stopped while starting") from self._thread_error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"process node {self.name} not Ready after {timeout:.0f}s")

    def stop(self, timeout: float = 60.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.run())
        except BaseException as exc:
            self._thread_error = exc
            log.exception("process node %s failed", self.name)

    # -- the agent ---------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Register, serve pods until `stop` is set (or the task is cancelled), then shut down."""
        self._loop = asyncio.get_running_loop()
        self._stop = stop or asyncio.Event()
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        ready_file = cfg.state_dir / READY_FILE
        ready_file.unlink(missing_ok=True)
        ips = IpBlock(cfg.ip_block)
        kube = await Kube.connect(cfg.kubeconfig)
        background: list[asyncio.Task[None]] = []
        try:
            self._kill_orphans()
            assert cfg.claims_dir is not None
            self._ctx = NodeContext(
                kube=kube,
                node_name=self.name,
                host_ip=HOST_IP,
                state_dir=cfg.state_dir,
                claims_dir=cfg.claims_dir,
                gpu_resource=GPU_RESOURCE,
                allocate_ip=ips.allocate,
                forget=self._forget,
            )
            await self._register(kube)
            background.append(asyncio.create_task(self._lease_loop(kube), name="lease"))
            background.append(asyncio.create_task(self._heartbeat_loop(kube), name="heartbeat"))
            await self._wait_schedulable(kube)
            log.info("node %s Ready (pod IPs 127.%d.0.0/16, state %s)", self.name, ips.block, cfg.state_dir)
            background.append(asyncio.create_task(self._watch_loop(kube), name="watch"))
            if cfg.parent_pid is not None:
                background.append(asyncio.create_task(self._watch_parent(cfg.parent_pid), name="parent"))
            ready_file.write_text(json.dumps({"name": self.name, "pid": os.getpid()}))
            self.ready.set()
            await self._stop.wait()
        finally:
            ready_file.unlink(missing_ok=True)
            self.ready.clear()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._stop_pods()
            with contextlib.suppress(Exception):
                await self._deregister(kube)
            await kube.close()
            ips.release()
            log.info("node %s stopped", self.name)

    async def _watch_parent(self, parent_pid: int) -> None:
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != parent_pid:
                break
        log.warning("node %s: parent process %d is gone, stopping", self.name, parent_pid)
        assert self._stop is not None
        self._stop.set()

    def _kill_orphans(self) -> None:
        """Processes a previous agent left behind (it was killed) die now, like at a reboot."""
        for pod_dir in (self.config.state_dir / "pods").glob("*"):
            if kill_recorded_group(pod_dir):
                log.info("killed the orphaned processes of pod dir %s", pod_dir)

    # -- node registration and liveness ------------------------------------------------------------------------

    def _node_status(self, ready: bool = True, reason: str = "KubeletReady", message: str = "") -> JSON:
        cfg = self.config
        now = podspec.now_rfc3339()
        capacity = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.pods)}
        if cfg.gpus:
            capacity[GPU_RESOURCE] = str(cfg.gpus)

        def condition(kind: str, status: str, why: str, text: str) -> JSON:
            return {
                "type": kind,
                "status": status,
                "reason": why,
                "message": text,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._transition_time or now,
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "process node"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "process node"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "process node"),
                condition(
                    "Ready",
                    "True" if ready else "False",
                    reason,
                    message or "process node agent is running pods as host processes",
                ),
            ],
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "architecture": _arch(),
                "operatingSystem": "linux",
                "kernelVersion": platform.release(),
                "osImage": "process-node (host processes, no isolation)",
                "containerRuntimeVersion": "process://0",
                "kubeletVersion": "process-node",
                "kubeProxyVersion": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        }

    def _labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(),
            **self.config.labels,
            PROCESS_NODE_LABEL: "true",
        }

    async def _register(self, kube: Kube) -> None:
        cfg = self.config
        self._transition_time = podspec.now_rfc3339()
        manifest: JSON = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self._labels(),
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    f"{PROCESS_NODE_LABEL}-state-dir": str(cfg.state_dir),
                },
            },
            "spec": {"taints": list(cfg.taints)} if cfg.taints else {},
        }
        try:
            node = await retrying(lambda: kube.request("POST", "/api/v1/nodes", body=manifest))
            log.info("registered node %s", self.name)
        except KubeError as exc:
            if exc.status != 409:
                raise
            existing = await retrying(lambda: kube.request("GET", self.node_path))
            # keep the taints the node controller manages, replace ours
            kept = [t for t in existing["spec"].get("taints") or [] if t["key"].startswith("node.kubernetes.io/")]
            patch = {
                "metadata": {"labels": self._labels(), "annotations": manifest["metadata"]["annotations"]},
                "spec": {"taints": kept + list(cfg.taints) or None},
            }
            node = await retrying(lambda: kube.request("PATCH", self.node_path, body=patch, content_type=MERGE_PATCH))
            log.info("took over the existing node %s", self.name)
        self._node_uid = node["metadata"]["uid"]
        await self._patch_node_status(kube)

    async def _patch_node_status(self, kube: Kube, **kw: Any) -> None:
        body = {"status": self._node_status(**kw)}
        await retrying(
            lambda: kube.request("PATCH", f"{self.node_path}/status", body=body, content_type=STRATEGIC_MERGE_PATCH)
        )

    async def _wait_schedulable(self, kube: Kube) -> None:
        """Until the node controller has seen the Ready condition and lifted its not-ready taint."""
        waited = time.monotonic()
        while True:
            node = await retrying(lambda: kube.request("GET", self.node_path))
            conditions = node.get("status", {}).get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            blocked = [t["key"] for t in node["spec"].get("taints") or [] if t["key"] in SCHEDULING_BLOCKERS]
            if ready and not blocked:
                return
            if time.monotonic() - waited > 10:
                log.info("node %s: waiting to become schedulable (ready=%s, taints %s)", self.name, ready, blocked)
                waited = time.monotonic()
            await asyncio.sleep(0.2)

    async def _lease_loop(self, kube: Kube) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{path_part(self.name)}"
        while True:
            try:
                await self._renew_lease(kube, path)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node %s: lease renewal failed: %s", self.name, exc)
            await asyncio.sleep(self.config.lease_renew_s)

    async def _renew_lease(self, kube: Kube, path: str) -> None:
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": self.config.lease_duration_s,
            "renewTime": podspec.now_micro(),
        }
        try:
            await kube.request("PATCH", path, body={"spec": spec}, content_type=MERGE_PATCH)
            return
        except KubeError as exc:
            if exc.status != 404:
                raise
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self._node_uid}],
            },
            "spec": spec,
        }
        await kube.request("POST", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", body=lease)

    async def _heartbeat_loop(self, kube: Kube) -> None:
        while True:
            await asyncio.sleep(self.config.status_heartbeat_s)
            try:
                await self._patch_node_status(kube)
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if exc.status == 404:
                    log.warning("node %s was deleted from the API: registering it again", self.name)
                    with contextlib.suppress(Exception):
                        await self._register(kube)
                else:
                    log.warning("node %s: status heartbeat failed: %s", self.name, exc)
            except Exception as exc:
                log.warning("node %s: status heartbeat failed: %s", self.name, exc)

    async def _deregister(self, kube: Kube) -> None:
        if self.config.on_stop == "delete":
            with contextlib.suppress(KubeError):
                await retrying(lambda: kube.request("DELETE", self.node_path), attempts=5)
            log.info("deleted node %s", self.name)
        else:
            await self._patch_node_status(
                kube, ready=False, reason="ProcessNodeStopped", message="the process node agent stopped"
            )
            log.info("marked node %s NotReady", self.name)

    # -- pods --------------------------------------------------------------------------------------------------

    async def _watch_loop(self, kube: Kube) -> None:
        selector = ("fieldSelector", f"spec.nodeName={self.name}")
        first, backoff = True, 0.5
        while True:
            try:
                listing = await kube.request("GET", "/api/v1/pods", query=[selector])
                await self._sync(kube, listing.get("items") or [], first=first)
                first = False
                rv: str = listing["metadata"]["resourceVersion"]
                while True:  # re-watch from the last version seen until the server says it is too old
                    query = [selector, ("resourceVersion", rv), ("allowWatchBookmarks", "true")]
                    async for event in kube.watch("/api/v1/pods", query):
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise KubeError(int(obj.get("code") or 500), json.dumps(obj).encode())
                        rv = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self._on_pod(event["type"], obj)
                        backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not (isinstance(exc, KubeError) and exc.status == 410):
                    log.warning("node %s: pod watch failed (%s); listing again in %.1fs", self.name, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)

    async def _sync(self, kube: Kube, pods: list[JSON], *, first: bool) -> None:
        listed = {p["metadata"]["uid"] for p in pods}
        for uid, worker in list(self.workers.items()):
            if uid not in listed:
                worker.update(worker.pod, deleted=True)
        for pod in pods:
            if first and not podspec.is_terminal(pod) and self._started_before(pod):
                await self._fail_after_restart(kube, pod)
            else:
                self._on_pod("ADDED", pod)
        if first:  # leftovers of pods that no longer exist
            for pod_dir in (self.config.state_dir / "pods").glob("*"):
                if pod_dir.name not in listed:
                    remove_pod_dir(pod_dir)

    def _started_before(self, pod: JSON) -> bool:
        """Was this pod's process started by an earlier run of an agent for this node?"""
        assert self._ctx is not None
        status = pod.get("status") or {}
        started = any("running" in (c.get("state") or {}) for c in status.get("containerStatuses") or [])
        return status.get("phase") == "Running" or started or self._ctx.pod_dir(pod["metadata"]["uid"]).exists()

    async def _fail_after_restart(self, kube: Kube, pod: JSON) -> None:
        """Like a rebooted kubelet: the pod's processes are gone, so the pod fails (or, if being deleted, goes)."""
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{path_part(meta['namespace'])}/pods/{path_part(meta['name'])}"
        log.info("pod %s ran under a previous agent: failing it", podspec.pod_key(pod))
        try:
            if meta.get("deletionTimestamp"):
                body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
                await retrying(lambda: kube.request("DELETE", path, body=body))
                return
            now = podspec.now_rfc3339()
            status = podspec.terminated_status(
                pod,
                137,
                pod_ip=(pod.get("status") or {}).get("podIP"),
                host_ip=HOST_IP,
                started=(pod.get("status") or {}).get("startTime") or now,
                finished=now,
                reason="ContainerStatusUnknown",
                phase="Failed",
                pod_reason="NodeRestarted",
                message="The container could not be located when the pod was terminated",
                pod_message="The process node agent restarted; the pod's processes are gone.",
            )
            body = {"metadata": {"uid": meta["uid"]}, "status": status}
            await retrying(
                lambda: kube.request("PATCH", f"{path}/status", body=body, content_type=STRATEGIC_MERGE_PATCH)
            )
        except KubeError as exc:
            log.warning("pod %s: could not fail it after the restart: %s", podspec.pod_key(pod), exc)

    def _on_pod(self, kind: str, pod: JSON) -> None:
        assert self._ctx is not None
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod, deleted=kind == "DELETED")
            return
        if kind == "DELETED":
            remove_pod_dir(self._ctx.pod_dir(uid))
            return
        if podspec.is_terminal(pod):
            if pod["metadata"].get("deletionTimestamp"):  # finished, being deleted (say, a finalizer went)
                task = asyncio.create_task(self._confirm_terminal_deletion(pod))
                self._side_tasks.add(task)
                task.add_done_callback(self._side_tasks.discard)
            return
        if self._stop is not None and self._stop.is_set():
            return
        log.info("pod %s bound to %s: starting it", podspec.pod_key(pod), self.name)
        self.workers[uid] = PodWorker(self._ctx, pod)
        self.workers[uid].update(pod)  # a pod already being deleted goes straight to termination

    async def _confirm_terminal_deletion(self, pod: JSON) -> None:
        assert self._ctx is not None
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{path_part(meta['namespace'])}/pods/{path_part(meta['name'])}"
        with contextlib.suppress(Exception):
            await self._ctx.kube.request(
                "DELETE", path, body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
            )

    def _forget(self, uid: str) -> None:
        assert self._ctx is not None
        if self.workers.pop(uid, None) is not None:
            remove_pod_dir(self._ctx.pod_dir(uid))

    async def _stop_pods(self) -> None:
        workers = list(self.workers.values())
        for worker in workers:
            worker.stop_for_shutdown(self.config.stop_grace_s)
        if not workers:
            return
        tasks = [w.task for w in workers]
        _, pending = await asyncio.wait(tasks, timeout=self.config.stop_grace_s + 15)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
