"""`python -m hack.devcluster up|down|status` — the local control plane behind `make cluster-up/down`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from hack.devcluster import REPO, ClusterState, DevCluster, FakeNode


def default_dir() -> Path:
    return Path(os.environ.get("ELASTIC_TRAINING_CLUSTER_DIR", REPO / ".devcluster"))


def load_nodes(path: Path) -> list[FakeNode]:
    spec = yaml.safe_load(path.read_text()) or {}
    return [FakeNode(**entry) for entry in spec.get("nodes", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.devcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=default_dir(), help="state folder (kubeconfig, logs)")
    parser.add_argument("--nodes", type=Path, default=Path(__file__).with_name("nodes.yaml"))
    args = parser.parse_args(argv)
    directory: Path = args.dir
    if args.command == "up":
        cluster = DevCluster.start(directory, load_nodes(args.nodes))
        print(f"cluster up: Kubernetes {cluster.server_version()} at {cluster.server}")
        print(f"  export KUBECONFIG={cluster.kubeconfig}")
        print(f"  kubectl: {cluster.bins['kubectl']}")
        print(f"  logs:    {directory.resolve() / 'logs'}")
        print(cluster.kubectl("get", "nodes", "-o", "wide").stdout)
        return 0
    if not (directory / "state.json").exists():
        print(f"no cluster runs from {directory}", file=sys.stderr)
        return 0 if args.command == "down" else 1
    if args.command == "down":
        DevCluster(ClusterState.load(directory), {}).stop()
        print("cluster down")
        return 0
    cluster = DevCluster.attach(directory)
    print(f"Kubernetes {cluster.server_version()} at {cluster.server}; KUBECONFIG={cluster.kubeconfig}")
    print(cluster.kubectl("get", "nodes").stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
