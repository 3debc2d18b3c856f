"""How the example's space and objective were chosen: curves of random configurations, then a bootstrap of ASHA vs
random search on them.

Trains `--configs` configurations drawn at random from a sweep's space (examples/sweep-digits.yaml or --example)
for the trial's epochs with the benchmark's `Curves` (the example's own training, args rendered by the operator),
then replays `--draws` pairs of sweeps on those curves: random search of `trials` full trials vs asynchronous
successive halving with the rule of Optuna's SuccessiveHalvingPruner (a trial reaching a rung continues if its
value is among the best 1/reductionFactor recorded there so far; while fewer than reductionFactor values are
recorded, only if it is the best), `parallelism` trials at a time, up to 4x the trials, until its best completed
trial is at least random search's best. Trials are drawn with replacement from the pool, the same sequence for both
arms (as random + asha in the benchmark), so a small pool makes it optimistic.

This is not the benchmark (no `decide()`, no Optuna): it is cheap enough to compare objectives (including
best_val_loss, the running minimum of val_loss, which the example does not report) and spaces before choosing
one; the benchmark then measures the choice on other seeds.

    python -m bench.sweep.explore [--example PATH] [--configs 150] [--draws 400] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.sweep.driver import EXAMPLE, Curves, Metrics, load_example, sweep_manifest, trial_args
from elastic_operator.api.validation import validate_tuningsweep

Curve = list[float]  # objective after each epoch, as "higher is better"


def _running(values: Sequence[float], better: Callable[[float, float], float]) -> Curve:
    out: Curve = []
    for v in values:
        out.append(v if not out else better(out[-1], v))
    return out


OBJECTIVES: dict[str, Callable[[Sequence[Metrics]], Curve]] = {
    "best_val_accuracy": lambda ms: [m["best_val_accuracy"] for m in ms],
    "val_accuracy": lambda ms: [m["val_accuracy"] for m in ms],
    "val_loss": lambda ms: [-m["val_loss"] for m in ms],
    "best_val_loss": lambda ms: _running([-m["val_loss"] for m in ms], max),
}
"""Candidate objectives, negated where lower is better."""


def sample(parameters: Sequence[Mapping[str, Any]], rng: random.Random) -> dict[str, Any]:
    """One configuration, drawn as Optuna's RandomSampler would (log-uniform where `log`)."""
    out: dict[str, Any] = {}
    for p in parameters:
        if p["type"] == "categorical":
            out[p["name"]] = rng.choice(p["values"])
            continue
        lo, hi = float(p["low"]), float(p["high"])
        v = math.exp(rng.uniform(math.log(lo), math.log(hi))) if p.get("log") else rng.uniform(lo, hi)
        out[p["name"]] = round(v) if p["type"] == "int" else v
    return out


def promotable(value: float, recorded: Sequence[float], reduction_factor: int) -> bool:
    """Optuna's SuccessiveHalvingPruner rule; `recorded` includes `value`."""
    k = max(1, len(recorded) // reduction_factor)
    return value >= sorted(recorded, reverse=True)[k - 1]


def asha_compute(
    seq: Sequence[Curve], target: float, rungs: Sequence[int], reduction_factor: int, parallelism: int
) -> tuple[int, float]:
    """(epochs trained, best completed value) of asynchronous successive halving over `seq` (trial n's curve),
    each running trial training one epoch per round, stopping once a completed trial reaches `target`."""
    recorded: dict[int, list[float]] = {r: [] for r in rungs}
    running: list[list[int]] = []  # [trial, epochs trained]
    nxt, spent, best = 0, 0, -math.inf
    while True:
        while len(running) < parallelism and nxt < len(seq):
            running.append([nxt, 0])
            nxt += 1
        if not running:
            return spent, best
        alive = []
        for t in running:
            t[1] += 1
            spent += 1
            curve = seq[t[0]]
            value = curve[t[1] - 1]
            if t[1] == len(curve):
                best = max(best, value)
            elif t[1] not in recorded:
                alive.append(t)
            else:
                recorded[t[1]].append(value)
                if promotable(value, recorded[t[1]], reduction_factor):
                    alive.append(t)
        running = alive
        if best >= target:
            return spent, best


def bootstrap(
    pool: Sequence[Curve], *, trials: int, rungs: Sequence[int], reduction_factor: int, parallelism: int,
    draws: int, seed: int,
) -> dict[str, float]:  # fmt: skip
    """Median ratio (ASHA's epochs / random's; not reached = inf), and the shares of draws reached and within 1/3."""
    rng = random.Random(seed)
    ratios: list[float] = []
    for _ in range(draws):
        seq = [rng.choice(pool) for _ in range(4 * trials)]
        target = max(c[-1] for c in seq[:trials])
        spent, best = asha_compute(seq, target, rungs, reduction_factor, parallelism)
        ratios.append(spent / sum(len(c) for c in seq[:trials]) if best >= target else math.inf)
    return {
        "median_ratio": statistics.median(ratios),
        "reached": sum(1 for r in ratios if math.isfinite(r)) / draws,
        "within_third": sum(1 for r in ratios if r <= 1 / 3) / draws,
    }


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    for k, i in enumerate(order):
        out[i] = float(k)
    return out


def rank_correlation(pool: Sequence[Curve], epoch: int) -> float:
    """Spearman correlation, within the best third by final value, of the value after `epoch` epochs with the
    final one: how well an early rung ranks the configurations that matter (ties broken by position)."""
    top = sorted(pool, key=lambda c: c[-1], reverse=True)[: max(3, len(pool) // 3)]
    a, b = _ranks([c[epoch - 1] for c in top]), _ranks([c[-1] for c in top])
    n = len(top)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / (n * (n * n - 1))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--example", type=Path, default=EXAMPLE)
    p.add_argument("--configs", type=int, default=150)
    p.add_argument("--draws", type=int, default=400)
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--parallelism", type=int, help="trials at a time (default: the example's)")
    p.add_argument("--seed", type=int, default=1, help="of the configurations (the benchmark's seeds are others)")
    args = p.parse_args(argv)
    example = load_example(args.example)
    if args.parallelism is None:
        args.parallelism = int(example["spec"]["parallelism"])
    sweep, issues = validate_tuningsweep(
        sweep_manifest(example, seed=0, trials=args.trials, parallelism=args.parallelism, early_stopping=True)
    )
    assert sweep is not None and not issues, issues
    asha = example["spec"]["earlyStopping"]["asha"]
    rf, r, rungs = int(asha["reductionFactor"]), int(asha["minResource"]), []
    while r < int(asha["maxResource"]):
        rungs.append(r)
        r *= rf
    rng, curves = random.Random(args.seed), Curves()
    runs = []
    for _ in range(args.configs):
        targs = trial_args(sweep, sample(example["spec"]["parameters"], rng))
        runs.append([curves.metrics(targs, e) for e in range(1, targs.epochs + 1)])
    print(
        f"{args.example}: {args.configs} configurations, rungs {rungs}, {args.parallelism} at a time, "
        f"{args.draws} draws"
    )
    heads = " | ".join(f"rank corr. epoch {r}" for r in rungs)
    print(f"| objective | median ratio | reached | within 1/3 | {heads} |\n|---|---:|---:|---:|{'---:|' * len(rungs)}")
    for name, objective in OBJECTIVES.items():
        pool = [objective(ms) for ms in runs]
        s = bootstrap(
            pool, trials=args.trials, rungs=rungs, reduction_factor=rf, parallelism=args.parallelism,
            draws=args.draws, seed=0,
        )  # fmt: skip
        corr = " | ".join(f"{rank_correlation(pool, r):.2f}" for r in rungs)
        print(f"| {name} | {s['median_ratio']:.3f} | {s['reached']:.2f} | {s['within_third']:.2f} | {corr} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
