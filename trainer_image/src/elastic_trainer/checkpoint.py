"""Atomic checkpoints in a directory shared by every pod of a job.

Layout: ``<dir>/ckpt-<step:012d>.pt``; a checkpoint is written to ``<dir>/.tmp-...`` first, flushed and fsynced,
then renamed into place with ``os.replace`` and the directory fsynced, so a reader (or a crash at any moment) sees
either the previous set of checkpoints or the new complete one, never a partial file under a final name.
``load_latest`` still falls back to older checkpoints when the newest cannot be read (e.g. a torn write on a
filesystem without atomic rename semantics). Only rank 0 writes; ``save`` is a no-op elsewhere.

Listing (``list_steps``, ``latest_step``) needs no torch, so the launcher can use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from elastic_trainer import contract

log = logging.getLogger("elastic_trainer.checkpoint")

_NAME = re.compile(r"^ckpt-(\d{12})\.pt$")
TMP_PREFIX = ".tmp-ckpt-"
STALE_TMP_S = 600.0  # temp files older than this are left-overs of a crashed writer


def directory(path: str | os.PathLike[str] | None = None) -> Path:
    p = path if path is not None else os.environ.get(contract.ENV_CHECKPOINT_DIR)
    if not p:
        raise ValueError(f"no checkpoint directory: pass one or set {contract.ENV_CHECKPOINT_DIR}")
    return Path(p)


def path_for(d: str | os.PathLike[str], step: int) -> Path:
    return Path(d) / f"ckpt-{step:012d}.pt"


def list_steps(d: str | os.PathLike[str] | None = None) -> list[int]:
    """Steps of the checkpoints present (complete files only), ascending."""
    try:
        names = os.listdir(directory(d))
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _NAME.match(n)))


def latest_step(d: str | os.PathLike[str] | None = None) -> int | None:
    steps = list_steps(d)
    return steps[-1] if steps else None


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return int(os.environ.get("RANK", "0"))


def write_atomic(final: Path, write: Callable[[Any], None]) -> Path:
    """Write a file by calling write(fileobj) on a temp file in the same directory, fsync, rename, fsync dir."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)
    return final


def save(
    state: Mapping[str, Any],
    step: int,
    d: str | os.PathLike[str] | None = None,
    *,
    keep: int | None = None,
    rank: int | None = None,
    barrier: bool = True,
) -> Path | None:
    """Rank 0 writes ``state`` (plus ``step``) as the checkpoint of ``step`` and prunes all but the newest ``keep``.

    With a process group, every rank waits at a barrier afterwards (pass ``barrier=False`` to skip), so that no rank
    leaves before the checkpoint is durable. Returns the path on rank 0, else None.
    """
    import torch

    target = directory(d)
    r = _rank() if rank is None else rank
    path: Path | None = None
    if r == 0:
        payload = {**state, "step": step}
        path = write_atomic(path_for(target, step), lambda f: torch.save(payload, f))
        prune(target, keep if keep is not None else int(_env(contract.ENV_CHECKPOINT_KEEP)))
    if barrier:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    return path


def prune(d: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (keep >= 1) and stale temp files."""
    target = Path(d)
    for step in list_steps(target)[: -max(1, keep)]:
        with contextlib.suppress(FileNotFoundError):
            path_for(target, step).unlink()
    now = time.time()
    for p in target.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > STALE_TMP_S:
                p.unlink()


def load(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    import torch

    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path}: not a checkpoint")
    return state


def load_latest(d: str | os.PathLike[str] | None = None, map_location: str = "cpu") -> dict[str, Any] | None:
    """The newest readable checkpoint (falling back to older ones when a file is damaged), or None."""
    target = directory(d)
    for step in reversed(list_steps(target)):
        p = path_for(target, step)
        try:
            return load(p, map_location)
        except FileNotFoundError:
            continue  # pruned meanwhile
        except Exception as exc:
            log.warning("checkpoint %s is unreadable (%s: %s); trying an older one", p, type(exc).__name__, exc)
    return None


def _env(name: str) -> str:
    return os.environ.get(name) or contract.DEFAULTS[name]
