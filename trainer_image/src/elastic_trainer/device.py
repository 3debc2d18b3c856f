"""Where a training process computes and how its ranks talk: the device and the process-group backend.

A worker pod runs one process per GPU (``nprocPerWorker``); torchrun gives each its ``LOCAL_RANK`` and
``LOCAL_WORLD_SIZE``. The rule (``choose``, a pure function of the request, that environment and what CUDA shows):

* ``cpu``, or ``auto`` without a visible GPU: ``cpu`` and ``gloo``.
* ``cuda``, or ``auto`` with visible GPUs: ``cuda:<LOCAL_RANK mod GPUs>``. The backend is ``nccl`` when every local
  rank has a GPU of its own; when a pod runs more ranks than it sees GPUs, ranks share a GPU and NCCL refuses
  that (two ranks of one communicator on one device), so the backend is ``gloo``, which also reduces CUDA tensors.
* ``cuda`` without a visible GPU is an error: asked for explicitly, silently training on the CPU would hide a
  misconfigured pod (no ``nvidia.com/gpu`` limit, wrong image).

Every pod of a job has the same template, hence the same GPU count, so all ranks of a generation choose the same
backend. The operator sets nothing for this: the request is the training program's own flag (the digits example's
``--device`` / ``DIGITS_DEVICE``).

Checkpoints stay portable with ``to_cpu``: the saved tensors are CPU copies, so a generation on CPU-only workers
loads what a GPU generation wrote, and the reverse (``checkpoint.load`` maps to the CPU; ``load_state_dict`` copies
into the module's device and the optimizer's state follows its parameters).

No torch import at module level: ``choose`` is usable (and tested) without torch.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Request = Literal["auto", "cpu", "cuda"]
REQUESTS: tuple[Request, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Placement:
    device: str
    """"cpu" or "cuda:<index>"."""
    backend: str
    """"gloo" or "nccl": the backend of the default process group."""
    reason: str
    """Why, in words (logged by the example, so a pod's log says where it trained)."""

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def index(self) -> int | None:
        """The CUDA device index, None on the CPU."""
        return int(self.device.split(":", 1)[1]) if self.is_cuda else None


def choose(request: str, *, local_rank: int, local_world_size: int, cuda_available: bool, gpus: int) -> Placement:
    """The placement of local rank ``local_rank`` of ``local_world_size`` given what CUDA shows (see the module)."""
    if request not in REQUESTS:
        raise ValueError(f"device {request!r}: expected one of {', '.join(REQUESTS)}")
    visible = gpus if cuda_available else 0
    if request == "cpu" or (request == "auto" and visible == 0):
        why = "requested" if request == "cpu" else "no GPU visible"
        return Placement("cpu", "gloo", f"cpu ({why})")
    if visible == 0:
        raise ValueError("device cuda requested but no GPU is visible (CUDA unavailable or CUDA_VISIBLE_DEVICES empty)")
    index = local_rank % visible
    if local_world_size <= visible:
        return Placement(f"cuda:{index}", "nccl", f"GPU {index} of {visible} for local rank {local_rank}")
    return Placement(
        f"cuda:{index}",
        "gloo",
        f"GPU {index} of {visible} shared by {local_world_size} local ranks: gloo (NCCL needs a GPU per rank)",
    )


def from_env(request: str = "auto", env: Mapping[str, str] | None = None) -> Placement:
    """``choose`` for this process: torchrun's LOCAL_RANK / LOCAL_WORLD_SIZE (0 / 1 outside torchrun) and CUDA as
    torch sees it (CUDA_VISIBLE_DEVICES applies). Imports torch."""
    import torch

    e = os.environ if env is None else env
    available = bool(torch.cuda.is_available())
    return choose(
        request,
        local_rank=int(e.get("LOCAL_RANK", "0")),
        local_world_size=int(e.get("LOCAL_WORLD_SIZE", "1")),
        cuda_available=available,
        gpus=int(torch.cuda.device_count()) if available else 0,
    )


def activate(placement: Placement) -> None:
    """Make the placement's GPU this process's current device (before init_process_group, so NCCL and every
    ``torch.cuda`` call without an explicit device use it, not GPU 0). No-op on the CPU."""
    if placement.index is not None:
        import torch

        torch.cuda.set_device(placement.index)


def to_cpu(obj: Any) -> Any:
    """A copy of ``obj`` with every tensor in it (nested dicts, lists, tuples) moved to the CPU: what a checkpoint
    saves, so that it loads on a worker without a GPU and never pins the writer's device index."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, OrderedDict):  # a module's state_dict: keep its class and version metadata
        out: OrderedDict[Any, Any] = OrderedDict((k, to_cpu(v)) for k, v in obj.items())
        if (meta := getattr(obj, "_metadata", None)) is not None:
            out._metadata = meta  # type: ignore[attr-defined]
        return out
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(v) for v in obj)
    return obj
