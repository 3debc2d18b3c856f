"""The local control plane for tests and the demo: real etcd, kube-apiserver, kube-scheduler,
kube-controller-manager and kwok on loopback, built from pinned Go modules (see hack/build-controlplane.sh).

Dev tooling only: nothing in the operator imports this.

    cluster = DevCluster.start(Path(".devcluster"), nodes=[FakeNode("gpu-0", gpus=8)])
    cluster.kubectl("get", "nodes")
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
STAGES = Path(__file__).with_name("kwok-stages.yaml")
CACHE = Path(os.environ.get("ELASTIC_TRAINING_CACHE", Path.home() / ".cache" / "elastic-training"))
ADMIN_TOKEN = "elastic-training-admin-token"  # loopback-only dev cluster; never used outside it
FAKE_NODE_LABEL = "elastic.training/fake-node"

# kwok v0.8.0's defaults for its KwokConfiguration options (pkg/apis/config/v1alpha1, SetObjectDefaults): written
# out in full whenever a configuration is given (see DevCluster._kwok_config). The command line sets the rest.
KWOK_DEFAULT_OPTIONS: dict[str, object] = {
    "cidr": "10.0.0.0/24",
    "manageAllNodes": False,
    "enableDebuggingHandlers": True,
    "enableContentionProfiling": False,
    "enableProfilingHandler": True,
    "podPlayStageParallelism": 4,
    "nodePlayStageParallelism": 4,
    "nodeLeaseParallelism": 4,
    "podsOnNodeSyncParallelism": 1,
    "enablePodsOnNodeSyncListPager": True,
    "enablePodsOnNodeSyncStreamWatch": False,
}

# GPU clusters bin-pack: score nodes by how full they get (MostAllocated), GPUs weighing most, so that whole
# nodes stay free for large workers. kube-scheduler's default (LeastAllocated) spreads instead.
# Client rate limits lifted (as kwokctl's disableQPSLimits does for simulated clusters): the defaults (scheduler
# 50 requests/s, controller-manager 20/s) bound how fast 1,000 fake nodes lose their not-ready taint (~4 min) and
# how fast pods are bound, which is not what bench/scale measures.
SCHEDULER_CONFIG = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
  qps: 5000
  burst: 10000
leaderElection:
  leaderElect: false
profiles:
- schedulerName: default-scheduler
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - {{name: nvidia.com/gpu, weight: 10}}
        - {{name: cpu, weight: 1}}
        - {{name: memory, weight: 1}}
"""


def versions() -> dict[str, str]:
    """The pinned versions, read from hack/versions.env (the one place they are written)."""
    out: dict[str, str] = {}
    for raw in (HACK / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def binaries() -> dict[str, Path]:
    """Build (or reuse from the cache) the control-plane binaries and return their paths by name."""
    result = subprocess.run(
        ["bash", str(HACK / "build-controlplane.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    dirs = [Path(line) for line in result.stdout.split()]
    found: dict[str, Path] = {}
    for d in dirs:
        for exe in d.iterdir():
            if exe.is_file() and os.access(exe, os.X_OK):
                found[exe.name] = exe
    need = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm"}
    missing = need - found.keys()
    if missing:
        raise RuntimeError(f"control-plane binaries missing after build: {sorted(missing)}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.2,
    message: str = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy; raise TimeoutError naming `message` after `timeout`.

    Exceptions raised by the predicate count as "not yet" and the last one is chained to the timeout.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}") from last_exc
        time.sleep(interval)


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call; its message carries kubectl's stderr (what the API server said)."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd[2:]))} failed ({self.returncode}): {str(self.stderr).strip()}"


@dataclass(frozen=True)
class FakeNode:
    """A kwok-managed node: it runs nothing, but the scheduler and kubelet-facing APIs treat it as real."""

    name: str
    gpus: int = 8
    cpu: str = "64"
    memory: str = "256Gi"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    def manifest(self, gpu_resource: str = "nvidia.com/gpu") -> dict[str, Any]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        if self.gpus:
            capacity[gpu_resource] = str(self.gpus)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    FAKE_NODE_LABEL: "true",
                    **self.labels,
                },
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {"taints": [dict(t) for t in self.taints]} if self.taints else {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }


@dataclass
class ClusterState:
    """What `up` wrote down so that `down`, tests and other processes can find the cluster."""

    dir: str
    kubeconfig: str
    server: str
    token: str
    etcd_port: int
    apiserver_port: int
    pids: dict[str, int]
    versions: dict[str, str]

    @classmethod
    def load(cls, directory: Path) -> ClusterState:
        return cls(**json.loads((directory / "state.json").read_text()))

    def save(self) -> None:
        Path(self.dir, "state.json").write_text(json.dumps(asdict(self), indent=2))


class DevCluster:
    """A running local control plane. Create with `start()` or `attach()`."""

    def __init__(self, state: ClusterState, bins: dict[str, Path]) -> None:
        self.state = state
        self.bins = bins

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        directory: Path,
        nodes: Iterable[FakeNode] = (),
        *,
        timeout: float = 120.0,
        kwok_pod_parallelism: int | None = None,
        kwok_lease_parallelism: int | None = None,
    ) -> DevCluster:
        """kwok_pod_parallelism: how many pod stages kwok plays at once (its default is 4). One kwok process plays
        the kubelets of every fake node, so at 1,000 nodes four at a time leaves pods Pending for minutes where
        1,000 real kubelets would start them in parallel: bench/scale raises it. Tests keep the default: with 32,
        kwok no longer finished deleting pods left Terminating on a node that was removed and came back
        (tests/integration/test_controller.py, a node's return).

        kwok_lease_parallelism: how many node leases kwok renews at once (its default is 4). Each node's lease is
        renewed every 10 s (a 40 s lease), so 1,000 nodes need 100 renewals a second; four at a time on a busy API
        server made 26 a second in bench/scale, leases lapsed past the node controller's grace period and nodes
        went NotReady by the hundred while their kubelets (kwok) were fine."""
        bins = binaries()
        directory = directory.resolve()
        if (directory / "state.json").exists():
            raise RuntimeError(f"a cluster already runs from {directory}; run `make cluster-down` first")
        for sub in ("etcd", "pki", "logs"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        pki = directory / "pki"
        _make_pki(pki)
        (pki / "tokens.csv").write_text(f'{ADMIN_TOKEN},elastic-admin,elastic-admin,"system:masters"\n')
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        kubeconfig = directory / "kubeconfig"
        _write_kubeconfig(kubeconfig, server, pki / "ca.crt", ADMIN_TOKEN)
        state = ClusterState(
            dir=str(directory),
            kubeconfig=str(kubeconfig),
            server=server,
            token=ADMIN_TOKEN,
            etcd_port=etcd_port,
            apiserver_port=api_port,
            pids={},
            versions=versions(),
        )
        cluster = cls(state, bins)
        try:
            cluster._spawn(
                "etcd",
                [
                    str(bins["etcd"]),
                    "--name=elastic-dev",
                    f"--data-dir={directory / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-cluster=elastic-dev=http://127.0.0.1:{etcd_peer}",
                    "--unsafe-no-fsync",  # a throwaway test store: speed over durability
                    "--quota-backend-bytes=4294967296",
                ],
            )
            cluster._spawn("kube-apiserver", cluster._apiserver_args())
            wait_for(cluster._apiserver_ready, timeout=timeout, interval=0.3, message="kube-apiserver /readyz")
            controller_kubeconfig = kubeconfig
            cluster._spawn(
                "kube-controller-manager",
                [
                    str(bins["kube-controller-manager"]),
                    f"--kubeconfig={controller_kubeconfig}",
                    f"--authentication-kubeconfig={controller_kubeconfig}",
                    f"--authorization-kubeconfig={controller_kubeconfig}",
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    "--use-service-account-credentials=false",
                    "--controllers=*,-nodeipam,-service-lb-controller,-route,-cloud-node-lifecycle",
                    "--node-monitor-grace-period=20s",
                    "--terminated-pod-gc-threshold=5000",
                    "--kube-api-qps=5000",
                    "--kube-api-burst=10000",
                ],
            )
            scheduler_config = directory / "scheduler.yaml"
            scheduler_config.write_text(SCHEDULER_CONFIG.format(kubeconfig=kubeconfig))
            cluster._spawn(
                "kube-scheduler",
                [
                    str(bins["kube-scheduler"]),
                    f"--config={scheduler_config}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                ],
            )
            cluster._spawn(
                "kwok",
                [
                    str(bins["kwok"]),
                    f"--kubeconfig={kubeconfig}",
                    f"--config={cls._kwok_config(directory, kwok_pod_parallelism, kwok_lease_parallelism)}",
                    f"--manage-nodes-with-label-selector={FAKE_NODE_LABEL}=true",
                    "--node-lease-duration-seconds=40",
                    "--cidr=10.244.0.0/16",
                    "--node-ip=10.0.0.1",
                    f"--server-address=127.0.0.1:{free_port()}",
                ],
            )
            state.save()
            wait_for(
                lambda: cluster._default_serviceaccount_ready("default"),
                timeout=timeout,
                message="the controller-manager to create the default ServiceAccount",
            )
            for node in nodes:
                cluster.add_node(node)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @staticmethod
    def _kwok_config(directory: Path, pod_parallelism: int | None, lease_parallelism: int | None = None) -> Path:
        if pod_parallelism is None and lease_parallelism is None:
            return STAGES
        # kwok v0.8 applies its option defaults only when no KwokConfiguration is given: one that names a single
        # option leaves the others zero (no node leases, no sync of a returning node's pods). So every option that
        # has a default is written out with it, and only the parallelism asked for differs.
        options = dict(KWOK_DEFAULT_OPTIONS)
        if pod_parallelism is not None:
            options["podPlayStageParallelism"] = pod_parallelism
        if lease_parallelism is not None:
            options["nodeLeaseParallelism"] = lease_parallelism
        path = directory / "kwok.yaml"
        lines = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in options.items())
        kwok = f"apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n{lines}"
        path.write_text(STAGES.read_text().rstrip("\n") + "\n---\n" + kwok)
        return path

    @classmethod
    def attach(cls, directory: Path) -> DevCluster:
        return cls(ClusterState.load(directory.resolve()), binaries())

    def stop(self) -> None:
        """Stop every component (newest first) and remove the cluster's state folder's state file."""
        for name, pid in reversed(list(self.state.pids.items())):
            _terminate(pid, name)
        self.state.pids.clear()
        state_file = Path(self.state.dir, "state.json")
        state_file.unlink(missing_ok=True)
        etcd_dir = Path(self.state.dir, "etcd")
        if etcd_dir.exists():
            subprocess.run(["rm", "-rf", str(etcd_dir)], check=False)

    def restart_apiserver(self, *, timeout: float = 120.0) -> float:
        """Stop kube-apiserver and start it again with the same arguments and port (etcd keeps every object), as
        an upgrade or a crash of the control plane would: every client's watches break and must resume. Returns the
        seconds until /readyz answered again."""
        started = time.monotonic()
        pid = self.state.pids.get("kube-apiserver")
        if pid:
            _terminate(pid, "kube-apiserver")
        self._spawn("kube-apiserver", self._apiserver_args())
        wait_for(self._apiserver_ready, timeout=timeout, interval=0.3, message="kube-apiserver /readyz after restart")
        return time.monotonic() - started

    # -- helpers -----------------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> str:
        return self.state.kubeconfig

    @property
    def server(self) -> str:
        return self.state.server

    @property
    def token(self) -> str:
        return self.state.token

    def env(self) -> dict[str, str]:
        """Environment for child processes that should talk to this cluster (KUBECONFIG, PATH with kubectl)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = self.kubeconfig
        env["PATH"] = f"{self.bins['kubectl'].parent}:{self.bins['helm'].parent}:{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster. With check=True a failure raises with stderr shown."""
        cmd = [str(self.bins["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, cmd, output=result.stdout, stderr=result.stderr)
        return result

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: dict[str, Any] | str, *extra: str) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "-f", "-", *extra, input=text)

    def server_version(self) -> str:
        version: str = json.loads(self.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
        return version

    def add_node(self, node: FakeNode, *, timeout: float = 60.0) -> None:
        """Create a kwok node and wait until it is Ready."""
        self.kubectl("create", "-f", "-", input=json.dumps(node.manifest()))
        wait_for(lambda: self.node_ready(node.name), timeout=timeout, message=f"node {node.name} Ready")

    def remove_node(self, name: str) -> None:
        """Delete a node as a cloud provider would when the machine goes away. Its pods are left to
        Kubernetes (the pod garbage collector fails and deletes pods bound to a node that no longer exists)."""
        self.kubectl("delete", "node", name, "--wait=false")

    def node_ready(self, name: str) -> bool:
        result = self.kubectl("get", "node", name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def apply_crds(self, timeout: float = 60.0) -> None:
        """Apply crds/*.yaml and wait until each CRD is Established."""
        crds = sorted((REPO / "crds").glob("*.yaml"))
        for path in crds:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        for path in crds:
            self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s", "-f", str(path))

    # -- internals ---------------------------------------------------------------------------------------------

    def _apiserver_args(self) -> list[str]:
        d = Path(self.state.dir)
        pki = d / "pki"
        return [
            str(self.bins["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{self.state.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.state.apiserver_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--event-ttl=2h",
            "--max-requests-inflight=2000",
            "--max-mutating-requests-inflight=1000",
        ]

    def _apiserver_ready(self) -> bool:
        if self.state.pids.get("kube-apiserver") and not _alive(self.state.pids["kube-apiserver"]):
            raise RuntimeError(f"kube-apiserver exited; see {self.state.dir}/logs/kube-apiserver.log")
        return self.kubectl("get", "--raw=/readyz", check=False, timeout=10).returncode == 0

    def _default_serviceaccount_ready(self, namespace: str) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(Path(self.state.dir, "logs", f"{name}.log"), "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        self.state.pids[name] = proc.pid
        self.state.save()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, name: str, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _make_pki(pki: Path) -> None:
    """A throwaway CA, the API server's serving certificate and the service-account signing key."""

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=pki)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
        "-subj", "/CN=elastic-training-dev-ca")  # fmt: skip
    (pki / "san.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
        "-subj", "/CN=kube-apiserver")  # fmt: skip
    ssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "apiserver.crt", "-days", "30", "-extfile", "san.cnf")  # fmt: skip
    ssl("genrsa", "-out", "sa.key", "2048")
    ssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def _write_kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    import base64

    ca_data = base64.b64encode(ca.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "elastic-dev", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": "elastic-admin", "user": {"token": token}}],
        "contexts": [{"name": "elastic-dev", "context": {"cluster": "elastic-dev", "user": "elastic-admin"}}],
        "current-context": "elastic-dev",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
