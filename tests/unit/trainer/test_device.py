"""Device and backend choice (a pure function of the request, torchrun's local rank/size and the visible GPUs), and
the CPU copies that keep checkpoints portable between GPU and CPU workers."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from elastic_trainer import device
from elastic_trainer.device import Placement, choose

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_when_asked_or_when_no_gpu_is_visible() -> None:
    assert choose("cpu", local_rank=0, local_world_size=1, cuda_available=True, gpus=8).device == "cpu"
    for available, gpus in ((False, 0), (False, 4), (True, 0)):  # no CUDA, or CUDA_VISIBLE_DEVICES=""
        p = choose("auto", local_rank=3, local_world_size=4, cuda_available=available, gpus=gpus)
        assert (p.device, p.backend, p.index, p.is_cuda) == ("cpu", "gloo", None, False)


def test_one_gpu_per_local_rank_is_nccl() -> None:
    placed = [choose("auto", local_rank=r, local_world_size=8, cuda_available=True, gpus=8) for r in range(8)]
    assert [p.device for p in placed] == [f"cuda:{r}" for r in range(8)]
    assert {p.backend for p in placed} == {"nccl"}
    assert choose("cuda", local_rank=1, local_world_size=2, cuda_available=True, gpus=4) == Placement(
        "cuda:1", "nccl", "GPU 1 of 4 for local rank 1"
    )


def test_more_ranks_than_gpus_share_them_over_gloo() -> None:
    placed = [choose("cuda", local_rank=r, local_world_size=3, cuda_available=True, gpus=2) for r in range(3)]
    assert [p.device for p in placed] == ["cuda:0", "cuda:1", "cuda:0"]
    assert {p.backend for p in placed} == {"gloo"}


def test_cuda_requested_without_a_gpu_is_an_error() -> None:
    with pytest.raises(ValueError, match="no GPU"):
        choose("cuda", local_rank=0, local_world_size=1, cuda_available=False, gpus=0)
    with pytest.raises(ValueError, match="expected one of"):
        choose("gpu", local_rank=0, local_world_size=1, cuda_available=True, gpus=1)


@given(st.integers(1, 16), st.integers(0, 16), st.sampled_from(device.REQUESTS), st.booleans())
def test_every_local_rank_gets_a_visible_device_and_nccl_never_shares_one(
    world: int, gpus: int, request: str, available: bool
) -> None:
    if request == "cuda" and not (available and gpus):
        return  # an error, above
    placed = [choose(request, local_rank=r, local_world_size=world, cuda_available=available, gpus=gpus)
              for r in range(world)]  # fmt: skip
    assert len({p.backend for p in placed}) == 1  # all ranks of a pod agree
    for p in placed:
        assert p.index is None or 0 <= p.index < gpus
    if placed[0].backend == "nccl":
        assert len({p.device for p in placed}) == world  # NCCL refuses two ranks on one GPU
    if request == "cpu" or not (available and gpus):
        assert {p.device for p in placed} == {"cpu"}


def test_from_env_reads_torchruns_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device.from_env("auto", {"LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}).device == "cuda:1"
    assert device.from_env("auto", {}).device == "cuda:0"  # one process, outside torchrun
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.from_env("auto", {"LOCAL_RANK": "1"}).device == "cpu"


def test_to_cpu_copies_nested_state() -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "pair": (torch.ones(1), [torch.zeros(1)])}
    copy = device.to_cpu(state)
    assert isinstance(copy["model"], OrderedDict)
    assert copy["model"]._metadata == state["model"]._metadata
    assert copy["model"]["weight"].data_ptr() != model.weight.data_ptr()  # a copy, not a view of the live weights
    assert torch.equal(copy["model"]["weight"], model.weight.detach())
    assert isinstance(copy["pair"], tuple) and isinstance(copy["pair"][1], list)
    assert copy["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]


@needs_cuda
def test_to_cpu_moves_gpu_tensors_and_they_load_back_onto_the_gpu() -> None:
    model = torch.nn.Linear(3, 2).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3, device="cuda")).sum().backward()
    opt.step()
    saved = device.to_cpu({"model": model.state_dict(), "optimizer": opt.state_dict()})
    tensors = [*saved["model"].values(), *(v for s in saved["optimizer"]["state"].values() for v in s.values())]
    assert tensors and all(t.device.type == "cpu" for t in tensors if isinstance(t, torch.Tensor))
    again = torch.nn.Linear(3, 2).cuda()
    opt2 = torch.optim.SGD(again.parameters(), lr=0.1, momentum=0.9)
    again.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    assert again.weight.is_cuda and torch.equal(again.weight, model.weight)
    assert all(s["momentum_buffer"].is_cuda for s in opt2.state.values())
