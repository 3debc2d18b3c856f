"""Where a pod's output goes (`<state-dir>/logs/<namespace>_<pod>.log`, stdout and stderr together, the latest pod
of that name) and the `logs` helper that prints or follows it. `<namespace>_<pod>.exit` appears next to it,
holding the exit code, once the process has ended: `--follow` stops there."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

DEFAULT_ROOT = Path(".devcluster") / "process-nodes"  # `run`'s default state dir is DEFAULT_ROOT/<node name>
STATE_DIRS_ENV = "ELASTIC_PROCESS_NODE_STATE_DIRS"  # os.pathsep-separated, searched by `logs`


def log_path(state_dir: Path, namespace: str, pod: str) -> Path:
    return state_dir / "logs" / f"{namespace}_{pod}.log"


def exit_path(log: Path) -> Path:
    return log.with_suffix(".exit")


def candidate_state_dirs(explicit: Iterable[Path] = ()) -> list[Path]:
    """The state dirs `logs` searches: those given, else $ELASTIC_PROCESS_NODE_STATE_DIRS, else every node
    folder under .devcluster/process-nodes/."""
    dirs = list(explicit)
    if dirs:
        return dirs
    env = os.environ.get(STATE_DIRS_ENV)
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return sorted(p for p in DEFAULT_ROOT.glob("*") if p.is_dir())


def find_log(state_dirs: Iterable[Path], namespace: str, pod: str) -> Path | None:
    """The pod's log file; when several nodes have one (the name was reused), the newest."""
    found = [p for p in (log_path(d, namespace, pod) for d in state_dirs) if p.exists()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def copy_log(path: Path, out: BinaryIO, *, follow: bool = False, poll_s: float = 0.2) -> None:
    """Write the log to `out`; with `follow`, keep writing what the process adds until it has exited."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                out.flush()
                continue
            if not follow:
                return
            if exit_path(path).exists():
                rest = f.read()  # whatever was written between the last read and the exit
                if rest:
                    out.write(rest)
                    out.flush()
                return
            time.sleep(poll_s)


def main_logs(target: str, state_dirs: Iterable[Path], follow: bool) -> int:
    namespace, sep, pod = target.partition("/")
    if not sep or not namespace or not pod:
        print("logs: expected <namespace>/<pod>", file=sys.stderr)
        return 2
    dirs = candidate_state_dirs(state_dirs)
    path = find_log(dirs, namespace, pod)
    if path is None:
        searched = ", ".join(map(str, dirs)) or "(no state dirs found)"
        print(f"logs: no log for {target} under {searched}", file=sys.stderr)
        return 1
    try:
        copy_log(path, sys.stdout.buffer, follow=follow)
    except KeyboardInterrupt:
        return 130
    return 0
