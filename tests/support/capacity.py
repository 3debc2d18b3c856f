"""Over-commitment watch: every pod event in a namespace, folded into GPU use per node.

The watch is `kubectl get pods -w`; when it ends (the API server restarted, the connection dropped) it is started
again and the pod table rebuilt from the fresh listing, so a restart of the control plane neither blinds the
watcher nor leaves deleted pods counted."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

from hack.devcluster import DevCluster

GPU = "nvidia.com/gpu"


class CapacityWatcher:
    """Records any moment the GPU limits of a node's bound, unfinished pods exceed that node's capacity."""

    def __init__(self, cluster: DevCluster, namespace: str, capacity: dict[str, int]) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.capacity = capacity
        self.pods: dict[str, tuple[str, int]] = {}  # name -> (node, gpus) for pods holding resources
        self.violations: list[str] = []
        self.events = 0
        self.restarts = 0  # how often the watch had to be started again
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self._start_watch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _start_watch(self) -> None:
        cmd = [str(self.cluster.bins["kubectl"]), f"--kubeconfig={self.cluster.kubeconfig}", "get", "pods",
               "-n", self.namespace, "-w", "--output-watch-events", "-o", "json"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def _run(self) -> None:
        while not self._stopped.is_set():
            assert self.proc is not None and self.proc.stdout is not None
            decoder, buf = json.JSONDecoder(), ""
            for line in self.proc.stdout:
                buf += line
                try:
                    event, _ = decoder.raw_decode(buf.strip())
                except json.JSONDecodeError:
                    continue
                buf = ""
                self._fold(event)
            self.proc.wait()
            if self._stopped.is_set():
                return
            time.sleep(1.0)  # back-off before watching again (the API server may still be starting)
            with self._lock:
                self.pods.clear()  # the new watch lists every pod afresh
                self.restarts += 1
            self._start_watch()

    def _fold(self, event: dict[str, Any]) -> None:
        pod = event.get("object") or {}
        if pod.get("kind") != "Pod":
            return
        with self._lock:
            self.events += 1
            name = pod["metadata"]["name"]
            node = pod["spec"].get("nodeName")
            phase = pod.get("status", {}).get("phase")
            gpus = sum(int(c.get("resources", {}).get("limits", {}).get(GPU, 0)) for c in pod["spec"]["containers"])
            if event["type"] == "DELETED" or not node or phase in ("Succeeded", "Failed"):
                self.pods.pop(name, None)
            else:
                self.pods[name] = (node, gpus)
            used: dict[str, int] = {}
            for n, g in self.pods.values():
                used[n] = used.get(n, 0) + g
            for n, g in used.items():
                if g > self.capacity.get(n, 0):
                    self.violations.append(f"{n}: {g} GPUs requested > {self.capacity.get(n, 0)} after event on {name}")

    def snapshot(self) -> tuple[int, list[str]]:
        """(events folded so far, violations so far), read consistently while the watch runs."""
        with self._lock:
            return self.events, list(self.violations)

    def stop(self) -> None:
        self._stopped.set()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.thread.join(timeout=10)
