"""`elastic-trainer`: the worker pod's entry point.

elastic-trainer launch -- python -m elastic_trainer.examples.digits --epochs 20
elastic-trainer rendezvous --port 29400
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="elastic-trainer", description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--log-level", default="INFO")
    sub = p.add_subparsers(dest="cmd", required=True)
    launch = sub.add_parser("launch", help="supervise the training command (configured by ELASTIC_* variables)")
    launch.add_argument("command", nargs=argparse.REMAINDER, help="-- then the training command")
    rdzv = sub.add_parser("rendezvous", help="run the job's rendezvous store (a TCPStore server)")
    rdzv.add_argument("--port", type=int, required=True)
    rdzv.add_argument("--host", default="0.0.0.0")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if args.cmd == "rendezvous":
        from elastic_trainer.rendezvous import serve

        serve(args.port, args.host)
        return 0
    from elastic_trainer.launcher import Launcher, LauncherConfig

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        p.error("launch needs a training command after --")
    try:
        cfg = LauncherConfig.from_env()
        launcher = Launcher(cfg, command)
    except ValueError as exc:
        print(f"elastic-trainer: {exc}", file=sys.stderr)
        return 2
    return launcher.run()


if __name__ == "__main__":
    raise SystemExit(main())
