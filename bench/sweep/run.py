"""ASHA vs random search on a real objective: the digits MLP trained by real torch.

Every arm is driven by the operator's own `sweep.decide()` (the same code the SweepController runs), on a
simulated cluster of `parallelism` trial slots where every running trial trains one epoch per round:

- random: random search, `trials` trials of `epochs` epochs each, no early stopping (the baseline);
- random + asha: the same random sampler (same seed: trial n has the same parameters) with ASHA (rungs at epochs
  1, 3, 9: minResource 1, reductionFactor 3, maxResource = epochs), the objective target set to the random arm's
  final best, and up to 4x the trials: we measure the compute (epochs trained, pruned trials' epochs included)
  until the ASHA sweep's best completed trial matches the baseline's best;
- tpe + asha: the same with TPE (6 startup trials), i.e. the configuration of examples/sweep-digits.yaml.

The objective is the example's `best_val_accuracy` (maximise): the best accuracy on the validation split so far,
whose model the trainer keeps. The test split is never used for selection; the test accuracy of the model each
arm hands over is reported next to it. Training is deterministic (fixed data split and init), so each
configuration is trained once and its curves are shared by the arms of a seed: an arm is charged for every epoch
it trains, never for another arm's. Seeds run in parallel processes (one Curves each).
Results: bench/results/sweep.json and sweep.md.

    python -m bench.sweep.run [--seeds 0 1 2 3 4] [--trials 24] [--epochs 27] [--parallelism 4] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.sweep.driver import Curves, run_sweep, sweep_manifest

RESULTS = Path(__file__).resolve().parents[1] / "results"

VARIANTS = {
    # name: sampler; ASHA with minResource 1, reductionFactor 3, maxResource = epochs (rungs 1, 3, 9)
    "random + asha": "random",
    "tpe + asha": "tpe",  # the configuration of examples/sweep-digits.yaml
}
METRIC, DIRECTION = "best_val_accuracy", "maximize"  # examples/sweep-digits.yaml's objective


def best_within(trace: Sequence[Sequence[float]], epochs: float) -> float | None:
    """The best completed value an arm had after `epochs` epochs of compute (None: no trial completed yet)."""
    found = None
    for spent, value in trace:
        if spent <= epochs:
            found = value
    return found


def run_seed(
    seed: int, trials: int, epochs: int, parallelism: int, metric: str = METRIC, direction: str = DIRECTION
) -> dict[str, Any]:
    curves = Curves()
    started = time.perf_counter()
    sign = 1 if direction == "maximize" else -1
    base = sweep_manifest(
        seed=seed,
        trials=trials,
        epochs=epochs,
        parallelism=parallelism,
        policy="none",
        metric=metric,
        direction=direction,
    )
    random_arm = run_sweep(base, curves, epochs)
    target = random_arm["best"]
    third = random_arm["epochs"] / 3
    random_arm["best_at_third"] = best_within(random_arm["trace"], third)
    out: dict[str, Any] = {"seed": seed, "random": random_arm, "target": target, "asha": {}}
    for name, algorithm in VARIANTS.items():
        spec = sweep_manifest(
            seed=seed, trials=4 * trials, epochs=epochs, parallelism=parallelism, policy="asha", target=target,
            algorithm=algorithm, metric=metric, direction=direction,
        )  # fmt: skip
        arm = run_sweep(spec, curves, epochs)
        arm["reached"] = arm["best"] is not None and sign * arm["best"] >= sign * target
        arm["compute_ratio"] = round(arm["epochs"] / random_arm["epochs"], 4)
        arm["best_at_third"] = best_within(arm["trace"], third)
        out["asha"][name] = arm
    out["configs_trained"] = len(curves)
    out["wall_s"] = round(time.perf_counter() - started, 1)
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _ratio(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.3f}"


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "# Sweep benchmark: ASHA vs random search (digits MLP, real torch)",
        "",
        f"Every arm runs through `sweep.decide()` (the SweepController's logic) with {cfg['parallelism']} trials at a "
        f"time. A full trial is {cfg['epochs']} epochs of the digits example (examples/sweep-digits.yaml's space: "
        f"lr, hidden, batch size). Objective: `{cfg['metric']}` ({cfg['direction']})"
        + (
            ", the best accuracy on the validation split (360 samples) so far, whose model the trainer keeps"
            if cfg["metric"] == METRIC
            else " (an ablation; examples/sweep-digits.yaml uses best_val_accuracy)"
        )
        + "; `test acc` is the test accuracy (360 samples, never used for selection unless it is the objective) of "
        "the model the best trial hands over. Random search runs "
        f"{cfg['trials']} full trials. Each ASHA variant (rungs at epochs 1, 3, 9: minResource 1, reductionFactor "
        "3, as in examples/sweep-digits.yaml; random + asha uses the same sampler and seed as random search, so "
        "trial n has the same parameters; tpe + asha is the example's configuration) runs until its best "
        "*completed* trial matches random search's final best (the sweep's objective target), at most "
        f"{4 * cfg['trials']} trials (one that does not get there has `reached` no, its ratio is what it spent, and "
        "it counts as infinitely expensive in the median and worst ratio). Compute = epochs trained, pruned and "
        "stopped trials included. `at 1/3` = the "
        "best completed value after a third of random search's compute (random search's own in its row).",
        "",
        f"| seed | arm | {cfg['metric']} | test acc | epochs | trials (pruned) | ratio to random | reached | at 1/3 |",
        "|---:|---|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in result["seeds"]:
        a = r["random"]
        lines.append(
            f"| {r['seed']} | random | {_fmt(a['best'])} | {_fmt(a['best_test_accuracy'])} | {a['epochs']} | "
            f"{a['trials']} (0) | 1 | - | {_fmt(a['best_at_third'])} |"
        )
        for name, b in r["asha"].items():
            lines.append(
                f"| {r['seed']} | {name} | {_fmt(b['best'])} | {_fmt(b['best_test_accuracy'])} | {b['epochs']} | "
                f"{b['trials']} ({b['pruned']}) | {b['compute_ratio']:.3f} | {'yes' if b['reached'] else 'no'} | "
                f"{_fmt(b['best_at_third'])} |"
            )
    lines += [
        "",
        "| variant | median ratio | worst ratio | reached | ratio <= 1/3 | ratio <= 1/3 in every seed |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for name, s in result["summary"]["variants"].items():
        lines.append(
            f"| {name} | {_ratio(s['median_ratio'])} | {_ratio(s['max_ratio'])} | {s['reached']}/{s['seeds']} | "
            f"{s['within_third']}/{s['seeds']} | {'yes' if s['goal_met'] else 'no'} |"
        )
    s = result["summary"]
    lines += [
        "",
        "Equal compute (a third of random search's epochs): "
        + "; ".join(
            f"{name}'s best is at least random search's in {v['at_third_not_worse']}/{v['seeds']} seeds"
            for name, v in s["variants"].items()
        )
        + ".",
        "",
        f"Configurations trained (curves shared between the arms of a seed): {s['configs_trained']}; wall time "
        f"{s['wall_s']:.0f} s ({s['jobs']} processes) on {result['machine']}.",
        "",
        "Reproduce: `make bench-sweep` (or `python -m bench.sweep.run`). The reading is in docs/sweeps.md (Benchmark).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=27)
    p.add_argument("--parallelism", type=int, default=4)
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="seeds run in parallel processes")
    p.add_argument("--metric", default=METRIC, help="an ablation: another metric of the example (val_loss, accuracy)")
    p.add_argument("--direction", default=DIRECTION, choices=["maximize", "minimize"])
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    started = time.perf_counter()
    seeds = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        run = (args.trials, args.epochs, args.parallelism, args.metric, args.direction)
        futures = [pool.submit(run_seed, s, *run) for s in args.seeds]
        for fut in futures:
            r = fut.result()
            seeds.append(r)
            shown = "; ".join(
                f"{name}: best {_fmt(b['best'])} (test {_fmt(b['best_test_accuracy'])}) in {b['epochs']} epochs "
                f"({b['trials']} trials, {b['pruned']} pruned), ratio {b['compute_ratio']:.3f}"
                for name, b in r["asha"].items()
            )
            a = r["random"]
            print(
                f"seed {r['seed']}: random best {_fmt(a['best'])} (test {_fmt(a['best_test_accuracy'])}) in "
                f"{a['epochs']} epochs; {shown}",
                flush=True,
            )
    variants = {}
    for name in VARIANTS:
        # an arm that never reached the target counts as infinitely expensive (its ratio is what it spent)
        ratios = [r["asha"][name]["compute_ratio"] if r["asha"][name]["reached"] else math.inf for r in seeds]
        reached = sum(1 for r in seeds if r["asha"][name]["reached"])
        within = sum(1 for r in seeds if r["asha"][name]["reached"] and r["asha"][name]["compute_ratio"] <= 1 / 3)
        at_third = [(r["asha"][name]["best_at_third"], r["random"]["best_at_third"]) for r in seeds]
        sign = 1 if args.direction == "maximize" else -1
        variants[name] = {
            "seeds": len(seeds),
            "reached": reached,
            "within_third": within,
            # equal compute: after a third of random search's epochs, is this arm's best at least random's then?
            "at_third_not_worse": sum(1 for a, b in at_third if a is not None and (b is None or sign * a >= sign * b)),
            "median_ratio": _finite(statistics.median(ratios)),
            "max_ratio": _finite(max(ratios)),
            "goal_met": within == len(seeds),
        }
    summary = {
        "variants": variants,
        "configs_trained": sum(r["configs_trained"] for r in seeds),
        "wall_s": round(time.perf_counter() - started, 1),
        "jobs": args.jobs,
    }
    config = {"trials": args.trials, "epochs": args.epochs, "parallelism": args.parallelism, "seeds": args.seeds}
    result = {
        "config": {**config, "metric": args.metric, "direction": args.direction},
        "machine": f"{platform.machine()} {platform.processor() or ''}, python {platform.python_version()}".strip(),
        "seeds": seeds,
        "summary": summary,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "sweep.md").write_text(markdown(result))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
