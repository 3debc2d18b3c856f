"""How the example's space and objective were chosen: curves of random configurations, then a bootstrap of ASHA vs
random search on them.

Trains `--configs` configurations drawn at random from a sweep's space (examples/sweep-digits.yaml or --example)
for the trial's epochs with the benchmark's `Curves` (the example's own training, args rendered by the operator),
then replays `--draws` pairs of sweeps on those curves: random search of `trials` full trials vs asynchronous
successive halving with the rule of Optuna's SuccessiveHalvingPruner (a trial reaching a rung continues if its
value is among the best 1/reductionFactor recorded there so far; while fewer than reductionFactor values are
recorded, only if it is the best), `parallelism` trials at a time, up to 4x the trials, until its best completed
trial is at least random search's best. Each draw is a sequence of distinct configurations from the pool (with
replacement only if the pool has fewer than 4x the trials, which makes it optimistic), the same sequence for both
arms (as random + asha in the benchmark).

Each objective also gets an "oracle" row: the same curves with every epoch's value replaced by the final one, i.e.
an objective whose first rung ranks configurations exactly as their end does. It bounds what any less noisy
objective could give with these ASHA settings, trials and parallelism: what is left is the cost of the schedule
itself (the first trials promoted while their rungs hold few values, a full trial taking maxResource rounds of a
slot). `--asha MIN:RF ...` replays other ASHA settings (minResource:reductionFactor) next to the example's.

`--models K` trains each configuration K times (the example's --seed, seed+1, ...: another data split,
initialisation and sample order each) and averages each objective's curves over the K models:
repeated holdout, the objective with less noise that K models per trial would buy, at K times the compute of a
trial (for both arms, so the ratios stay comparable). The example trains one model per trial.

This is not the benchmark (no `decide()`, no Optuna): it is cheap enough to compare objectives (including
best_val_loss, the running minimum of val_loss, which the example does not report) and spaces before choosing
one; the benchmark then measures the choice on other seeds.

    python -m bench.sweep.explore [--example PATH] [--configs 150] [--draws 400] [--seed 1] [--trials 24]
        [--asha 1:3 1:4 ...] [--models 1]
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
    """Median ratio (ASHA's epochs / random's; not reached = inf), and the shares of draws reached and within 1/3.
    A draw is 4x `trials` distinct curves of the pool (with replacement if the pool is smaller than that)."""
    rng = random.Random(seed)
    ratios: list[float] = []
    for _ in range(draws):
        seq = draw(pool, 4 * trials, rng)
        target = max(c[-1] for c in seq[:trials])
        spent, best = asha_compute(seq, target, rungs, reduction_factor, parallelism)
        ratios.append(spent / sum(len(c) for c in seq[:trials]) if best >= target else math.inf)
    return {
        "median_ratio": statistics.median(ratios),
        "reached": sum(1 for r in ratios if math.isfinite(r)) / draws,
        "within_third": sum(1 for r in ratios if r <= 1 / 3) / draws,
    }


def draw(pool: Sequence[Curve], n: int, rng: random.Random) -> list[Curve]:
    """`n` curves of `pool` in random order, distinct when the pool has at least `n` (as a sampler's trials are)."""
    if len(pool) >= n:
        return rng.sample(list(pool), n)
    return [rng.choice(pool) for _ in range(n)]


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """The epoch-wise mean of one configuration's curves (one per model)."""
    return [sum(vs) / len(vs) for vs in zip(*curves, strict=True)]


def oracle(pool: Sequence[Curve]) -> list[Curve]:
    """Every curve flat at its final value: an objective whose every rung ranks as the end does."""
    return [[c[-1]] * len(c) for c in pool]


def rungs_of(min_resource: int, reduction_factor: int, max_resource: int) -> list[int]:
    """ASHA's rungs below a full trial (Optuna's SuccessiveHalvingPruner, minEarlyStoppingRate 0)."""
    out, r = [], min_resource
    while r < max_resource:
        out.append(r)
        r *= reduction_factor
    return out


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
    p.add_argument("--models", type=int, default=1, help="models per configuration, objective averaged (see above)")
    p.add_argument("--asha", nargs="*", default=[], metavar="MIN:RF", help="more ASHA settings to replay")
    args = p.parse_args(argv)
    example = load_example(args.example)
    if args.parallelism is None:
        args.parallelism = int(example["spec"]["parallelism"])
    sweep, issues = validate_tuningsweep(
        sweep_manifest(example, seed=0, trials=args.trials, parallelism=args.parallelism, early_stopping=True)
    )
    assert sweep is not None and not issues, issues
    asha = example["spec"]["earlyStopping"]["asha"]
    full = int(asha["maxResource"])
    settings = [(int(asha["minResource"]), int(asha["reductionFactor"]))]
    settings += [(int(m), int(f)) for m, f in (a.split(":") for a in args.asha) if (int(m), int(f)) not in settings]
    rng, curves = random.Random(args.seed), Curves()
    runs: list[list[list[Metrics]]] = []  # configuration -> model -> epoch -> metrics
    for _ in range(args.configs):
        targs = trial_args(sweep, sample(example["spec"]["parameters"], rng))
        models = [argparse.Namespace(**{**vars(targs), "seed": targs.seed + k}) for k in range(args.models)]
        runs.append([[curves.metrics(m, e) for e in range(1, m.epochs + 1)] for m in models])
    print(
        f"{args.example}: {args.configs} configurations, random search of {args.trials} trials, "
        f"{args.parallelism} at a time, {args.draws} draws"
    )
    print("| objective | rungs | median ratio | reached | within 1/3 | rank corr. at the rungs |")
    print("|---|---|---:|---:|---:|---|")
    for name, objective in OBJECTIVES.items():
        real = [mean_curve([objective(ms) for ms in models]) for models in runs]
        for label, pool in ((name, real), (f"{name} (oracle)", oracle(real))):
            for min_resource, rf in settings:
                rungs = rungs_of(min_resource, rf, full)
                s = bootstrap(
                    pool, trials=args.trials, rungs=rungs, reduction_factor=rf, parallelism=args.parallelism,
                    draws=args.draws, seed=0,
                )  # fmt: skip
                corr = ", ".join(f"{rank_correlation(pool, r):.2f}" for r in rungs) if pool is real else "1"
                print(
                    f"| {label} | {', '.join(map(str, rungs))} | {s['median_ratio']:.3f} | {s['reached']:.2f} | "
                    f"{s['within_third']:.2f} | {corr} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
