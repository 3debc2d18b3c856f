"""`python -m hack.processnode run|logs ...` (see hack/processnode/__init__.py and docs/process-node.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from hack.processnode.logs import DEFAULT_ROOT, main_logs
from hack.processnode.node import ProcessNode, ProcessNodeConfig


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _taint(text: str) -> dict[str, str]:
    """`key=value:Effect` or `key:Effect`."""
    head, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise argparse.ArgumentTypeError(f"expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute, got {text!r}")
    key, _, value = head.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hack.processnode",
        description="Dev-only node agent running pods as host processes (no isolation; demo and tests only).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="register a node and run the pods bound to it until SIGTERM/SIGINT")
    run.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    run.add_argument("--name", required=True, help="the Node's name")
    run.add_argument("--gpus", type=int, default=0, help="declared nvidia.com/gpu capacity (fake GPUs)")
    run.add_argument("--cpu", default="8", help="declared cpu capacity (default 8)")
    run.add_argument("--memory", default="16Gi", help="declared memory capacity (default 16Gi)")
    run.add_argument("--pods", type=int, default=110, help="declared pod capacity (default 110)")
    run.add_argument("--state-dir", type=Path, help=f"pod dirs, logs, claims (default {DEFAULT_ROOT}/<name>)")
    run.add_argument("--label", type=_key_value, action="append", default=[], metavar="K=V", help="node label")
    run.add_argument("--taint", type=_taint, action="append", default=[], metavar="K[=V]:EFFECT", help="node taint")
    run.add_argument(
        "--claims-dir",
        type=Path,
        help="persistentVolumeClaim dirs (default <state-dir>/claims); "
        "point several nodes at one folder so that a job's pods share their claims",
    )
    run.add_argument(
        "--on-stop",
        choices=["delete", "notready"],
        default="delete",
        help="delete the Node when stopping (default) or leave it NotReady",
    )
    run.add_argument("--ip-block", type=int, help="pod IPs are 127.<block>.x.y (default: the first free block)")
    run.add_argument("--stop-grace", type=float, default=10.0, help="max seconds for pods' SIGTERM on shutdown")
    run.add_argument("--exit-with-parent", action="store_true", help="stop when the process that started it ends")
    run.add_argument("--verbose", "-v", action="store_true")
    logs = sub.add_parser("logs", help="print a pod's output: logs <namespace>/<pod>")
    logs.add_argument("target", metavar="NAMESPACE/POD")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the process has exited")
    logs.add_argument(
        "--state-dir",
        type=Path,
        action="append",
        default=[],
        help=f"where to look (repeatable; default $ELASTIC_PROCESS_NODE_STATE_DIRS or {DEFAULT_ROOT}/*)",
    )
    return p


async def _serve(node: ProcessNode) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.run(stop)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "logs":
        return main_logs(args.target, args.state_dir, args.follow)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = ProcessNodeConfig(
        name=args.name,
        state_dir=args.state_dir or DEFAULT_ROOT / args.name,
        kubeconfig=args.kubeconfig,
        cpu=args.cpu,
        memory=args.memory,
        pods=args.pods,
        gpus=args.gpus,
        labels=dict(args.label),
        taints=args.taint,
        claims_dir=args.claims_dir,
        on_stop=args.on_stop,
        ip_block=args.ip_block,
        stop_grace_s=args.stop_grace,
        parent_pid=os.getppid() if args.exit_with_parent else None,
    )
    asyncio.run(_serve(ProcessNode(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
