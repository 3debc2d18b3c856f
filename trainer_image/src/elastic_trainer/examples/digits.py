"""An elastic DDP example: an MLP on scikit-learn's digits (8x8 images, 10 classes; ships with scikit-learn).

Run under the launcher (``elastic-trainer launch -- python -m elastic_trainer.examples.digits``), under plain
torchrun, or as one process. It uses the whole trainer library: the elastic sampler (every training sample once per
epoch, whatever the world size, resumed mid-epoch), atomic checkpoints (periodic and on request), the agreed
checkpoint-and-stop hook, and progress/metric reports ("loss", "accuracy" each epoch).

Hyperparameters come from flags or DIGITS_* variables (flags win): --lr, --hidden, --batch-size (global: split over
the ranks, so the optimisation does not depend on the world size), --epochs, --momentum, --seed. Reaches >= 95 %
test accuracy with the defaults. Test/bench knobs: --step-delay (seconds of simulated compute per step),
--sample-delay (seconds of simulated accelerator compute per sample of this rank's batch: data parallelism then
speeds the job up as on real accelerators, which a CPU shared by all ranks cannot show), --step-log (JSON lines
per step from rank 0), --result (final JSON from rank 0).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from elastic_trainer import checkpoint, contract
from elastic_trainer.control import Control
from elastic_trainer.report import report
from elastic_trainer.sampler import ElasticSampler


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    e = os.environ.get
    p = argparse.ArgumentParser(description="elastic digits MLP")
    p.add_argument("--lr", type=float, default=float(e("DIGITS_LR", "0.1")))
    p.add_argument("--momentum", type=float, default=float(e("DIGITS_MOMENTUM", "0.9")))
    p.add_argument("--hidden", type=int, default=int(e("DIGITS_HIDDEN", "128")))
    p.add_argument("--batch-size", type=int, default=int(e("DIGITS_BATCH_SIZE", "64")), help="global batch size")
    p.add_argument("--epochs", type=int, default=int(e("DIGITS_EPOCHS", "15")))
    p.add_argument("--seed", type=int, default=int(e("DIGITS_SEED", "0")))
    p.add_argument("--checkpoint-every", type=int, default=int(e(contract.ENV_CHECKPOINT_INTERVAL_STEPS) or 0) or 50)
    p.add_argument("--checkpoint-dir", default=e(contract.ENV_CHECKPOINT_DIR))
    p.add_argument("--step-delay", type=float, default=float(e("DIGITS_STEP_DELAY", "0")))
    p.add_argument("--sample-delay", type=float, default=float(e("DIGITS_SAMPLE_DELAY", "0")))
    p.add_argument("--step-log", default=e("DIGITS_STEP_LOG"))
    p.add_argument("--result", default=e("DIGITS_RESULT"))
    return p.parse_args(argv)


def load_data(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """The digits split (80/20, stratified). Cached as .npz next to the temp dir, keyed by scikit-learn's version,
    so a generation's start does not pay for importing scikit-learn again."""
    import importlib.metadata

    import numpy as np
    import torch

    cache = os.path.join(
        tempfile.gettempdir(), f"elastic-digits-{importlib.metadata.version('scikit-learn')}-{seed}.npz"
    )
    try:
        with np.load(cache) as z:
            xtr, ytr, xte, yte = z["xtr"], z["ytr"], z["xte"], z["yte"]
    except (OSError, KeyError, ValueError):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.2, random_state=seed, stratify=y)
        tmp = f"{cache}.{os.getpid()}.tmp.npz"
        np.savez(tmp, xtr=xtr, ytr=ytr, xte=xte, yte=yte)
        os.replace(tmp, cache)
    f = torch.float32
    return torch.tensor(xtr, dtype=f), torch.tensor(ytr), torch.tensor(xte, dtype=f), torch.tensor(yte)


def main(argv: Sequence[str] | None = None) -> int:
    ctl = Control()
    with ctl.fail_fast():  # a lost peer: tell the launcher and leave at once
        return _main(argv, ctl)


def _main(argv: Sequence[str] | None, ctl: Control) -> int:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    args = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    if distributed:
        pg_timeout = float(os.environ.get(contract.ENV_PG_TIMEOUT_S) or contract.DEFAULTS[contract.ENV_PG_TIMEOUT_S])
        dist.init_process_group("gloo", timeout=timedelta(seconds=pg_timeout))
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    torch.manual_seed(args.seed)
    xtr, ytr, xte, yte = load_data(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, args.hidden), torch.nn.ReLU(), torch.nn.Linear(args.hidden, 10))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    ctl.wait_for_go()  # a prepared generation waits here until the previous one has checkpointed
    step, epoch, offset = 0, 0, 0
    accuracy, epoch_loss = 0.0, 0.0  # of the last completed epoch (restored too: a resumed rank reports them)
    ckdir = args.checkpoint_dir
    if ckdir and (state := checkpoint.load_latest(ckdir)) is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch, offset = int(state["step"]), int(state["epoch"]), int(state["offset"])
        accuracy, epoch_loss = float(state.get("accuracy", 0.0)), float(state.get("loss", 0.0))
    last_ckpt: int | None = step if step else None
    net: Any = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    per_rank = max(1, round(args.batch_size / world))
    step_log = open(args.step_log, "a") if args.step_log and rank == 0 else None  # noqa: SIM115
    generation = int(os.environ.get(contract.ENV_GENERATION, "0"))

    def save() -> None:
        nonlocal last_ckpt
        if ckdir:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "offset": offset,
                     "accuracy": accuracy, "loss": epoch_loss}  # fmt: skip
            checkpoint.save(state, step, ckdir)
            last_ckpt = step

    def log_step(**kw: Any) -> None:
        if step_log is not None:
            step_log.write(json.dumps({"t": time.time(), "step": step, "world": world, "gen": generation, **kw}) + "\n")
            step_log.flush()

    log_step(event="start", epoch=epoch, offset=offset)
    t_last, steps_since = time.monotonic(), 0
    while epoch < args.epochs:
        sampler = ElasticSampler(
            len(xtr), batch_size=per_rank, rank=rank, world_size=world, epoch=epoch, offset=offset, seed=args.seed
        )
        loss_sum = torch.zeros(2)  # summed loss, samples (this rank, this generation's part of the epoch)
        for i, idx in enumerate(sampler):
            count = sampler.consumed_after(i + 1) - sampler.consumed_after(i)  # samples in this global step
            index = torch.tensor(idx, dtype=torch.long)
            loss = F.cross_entropy(net(xtr[index]), ytr[index], reduction="sum")
            opt.zero_grad()
            (loss * world / count).backward()  # type: ignore[no-untyped-call]  # DDP averages over ranks: this yields the global mean gradient
            opt.step()
            loss_sum += torch.tensor([loss.item(), len(idx)])
            step += 1
            offset = sampler.consumed_after(i + 1)
            steps_since += 1
            if args.step_delay or args.sample_delay:
                time.sleep(args.step_delay + args.sample_delay * len(idx))
            log_step(event="step")
            now = time.monotonic()
            if now - t_last >= 0.5:
                sps = steps_since * args.batch_size / (now - t_last)
                report(step=step, epoch=epoch, samples_per_s=sps, metrics=_metrics(epoch_loss, accuracy, epoch),
                       last_checkpoint_step=last_ckpt, world_size=world)  # fmt: skip
                t_last, steps_since = now, 0
            stop = ctl.should_stop(step)
            if stop or step % args.checkpoint_every == 0:
                save()
            if stop:
                report(step=step, epoch=epoch, last_checkpoint_step=last_ckpt, world_size=world)
                log_step(event="stopped")
                ctl.stopped(step)
                if distributed:
                    dist.destroy_process_group()
                return 0
        if distributed:
            dist.all_reduce(loss_sum)
        epoch_loss = float(loss_sum[0] / max(1.0, float(loss_sum[1])))
        with torch.no_grad():
            accuracy = float((model(xte).argmax(1) == yte).float().mean())
        epoch += 1
        offset = 0
        if rank == 0:
            print(json.dumps({"epoch": epoch, "step": step, "world": world, "loss": epoch_loss, "accuracy": accuracy}))
        report(step=step, epoch=epoch, metrics=_metrics(epoch_loss, accuracy, epoch), last_checkpoint_step=last_ckpt,
               world_size=world)  # fmt: skip
    save()
    report(step=step, epoch=epoch, metrics=_metrics(epoch_loss, accuracy, epoch), last_checkpoint_step=last_ckpt)
    log_step(event="done", accuracy=accuracy)
    if args.result and rank == 0:
        with torch.no_grad():
            accuracy = float((model(xte).argmax(1) == yte).float().mean())
        with open(args.result, "w") as f:
            json.dump({"accuracy": accuracy, "step": step, "epoch": epoch, "world": world}, f)
    if distributed:
        dist.destroy_process_group()
    return 0


def _metrics(loss: float, accuracy: float, epoch: int) -> dict[str, float]:
    return {"loss": loss, "accuracy": accuracy} if epoch else {}


if __name__ == "__main__":
    raise SystemExit(main())
