"""ASHA vs random search on a real objective: the digits MLP trained by real torch, in this process.

Both arms are driven by the operator's own `sweep.decide()` (the same code the SweepController runs), on a
simulated cluster of `parallelism` trial slots where every running trial trains one epoch per round:

- random: random search, `trials` trials of `epochs` epochs each, no early stopping (the baseline);
- random + asha: the same random sampler (same seed: trial n has the same parameters) with ASHA (rungs at epochs
  1, 3, 9: minResource 1, reductionFactor 3, maxResource = epochs), the objective target set to the random arm's
  final best, and up to 4x the trials: we measure the compute (epochs trained, pruned trials' epochs included)
  until the ASHA sweep's best completed trial matches the baseline's best;
- tpe + asha: the same with TPE (6 startup trials), i.e. the configuration of examples/sweep-digits.yaml.

Training is deterministic (fixed data split and init), so each configuration is trained once and its per-epoch
accuracy curve is shared: an arm is charged for every epoch it trains, never for another arm's.
Results: bench/results/sweep.json and sweep.md.

    python -m bench.sweep.run [--seeds 0 1 2] [--trials 24] [--epochs 27] [--parallelism 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.sweep.driver import Curves, run_sweep, sweep_manifest

RESULTS = Path(__file__).resolve().parents[1] / "results"


VARIANTS = {
    # name: (sampler, minEarlyStoppingRate); ASHA with minResource 1, reductionFactor 3, maxResource = epochs
    "random + asha": ("random", 0),
    "tpe + asha": ("tpe", 0),  # the configuration of examples/sweep-digits.yaml
}


def run_seed(seed: int, trials: int, epochs: int, parallelism: int, curves: Curves) -> dict[str, Any]:
    base = sweep_manifest(seed=seed, trials=trials, epochs=epochs, parallelism=parallelism, policy="none")
    random_arm = run_sweep(base, curves, epochs)
    target = random_arm["best"]
    out: dict[str, Any] = {"seed": seed, "random": random_arm, "target": target, "asha": {}}
    for name, (algorithm, rate) in VARIANTS.items():
        spec = sweep_manifest(
            seed=seed, trials=4 * trials, epochs=epochs, parallelism=parallelism, policy="asha", target=target,
            early_stopping_rate=rate, algorithm=algorithm,
        )  # fmt: skip
        arm = run_sweep(spec, curves, epochs)
        arm["reached"] = arm["best"] is not None and arm["best"] >= target
        arm["compute_ratio"] = round(arm["epochs"] / random_arm["epochs"], 4)
        out["asha"][name] = arm
    return out


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        "# Sweep benchmark: ASHA vs random search (digits MLP, real torch)",
        "",
        f"Every arm runs through `sweep.decide()` (the SweepController's logic) with {cfg['parallelism']} trials at a "
        f"time. A full trial is {cfg['epochs']} epochs of the digits MLP (examples/sweep-digits.yaml's space: lr, "
        f"hidden, batch size). Random search runs {cfg['trials']} full trials. Each ASHA variant (rungs at epochs "
        "1, 3, 9; random + asha uses the same sampler and seed as random search, so trial n has the same "
        "parameters; tpe + asha is examples/sweep-digits.yaml's configuration) runs until its best *completed* trial "
        "matches random search's final best test accuracy (the sweep's objective target), at most "
        f"{4 * cfg['trials']} trials. Compute = epochs trained, pruned and stopped trials included.",
        "",
        "| seed | random best | random epochs | variant | ASHA best | ASHA epochs | trials (pruned) | ratio "
        "| reached |",
        "|---:|---:|---:|---|---:|---:|---:|---:|:---:|",
    ]
    for r in result["seeds"]:
        a = r["random"]
        for name, b in r["asha"].items():
            best = "-" if b["best"] is None else f"{b['best']:.4f}"
            lines.append(
                f"| {r['seed']} | {a['best']:.4f} | {a['epochs']} | {name} | {best} | {b['epochs']} | "
                f"{b['trials']} ({b['pruned']}) | {b['compute_ratio']:.3f} | {'yes' if b['reached'] else 'no'} |"
            )
    lines += [
        "",
        "| variant | median ratio | worst ratio | reached | ratio <= 1/3 in every seed |",
        "|---|---:|---:|---:|:---:|",
    ]
    for name, s in result["summary"]["variants"].items():
        lines.append(
            f"| {name} | {s['median_ratio']:.3f} | {s['max_ratio']:.3f} | {s['reached']}/{s['seeds']} | "
            f"{'yes' if s['goal_met'] else 'no'} |"
        )
    s = result["summary"]
    lines += [
        "",
        f"Configurations trained (curves shared between arms): {s['configs_trained']}; wall time {s['wall_s']:.0f} s "
        f"on {result['machine']}.",
        "",
        "Reading: digits' test accuracy is noisy between neighbouring epochs at high learning rates (a run at 350/360 "
        "after 3 epochs can be at 340 after 9 and 353 after 27), so the early rungs rank good configurations "
        "poorly; they do throw out the hopeless ones (tiny learning rates, divergence) cheaply. Random search's best "
        "is the luckiest of its full runs, and ASHA has to complete enough good ones to match it. A separate look at "
        "48 random configurations: the correlation of test accuracy after 1, 3, 9 epochs with accuracy after 27 is "
        "0.22, 0.60, 0.87; 8 of 48 end at >= 352/360, within 1-2 test samples of each other. The 1/3 goal is not "
        "met on this objective: ASHA saves 40-65 % of random search's compute, not 67 %.",
        "",
        "Reproduce: `make bench-sweep` (or `python -m bench.sweep.run`).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=27)
    p.add_argument("--parallelism", type=int, default=4)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    started = time.perf_counter()
    curves = Curves()
    seeds = []
    for seed in args.seeds:
        r = run_seed(seed, args.trials, args.epochs, args.parallelism, curves)
        seeds.append(r)
        shown = "; ".join(
            f"{name}: best {b['best']} in {b['epochs']} epochs ({b['trials']} trials, {b['pruned']} pruned), "
            f"ratio {b['compute_ratio']:.3f}"
            for name, b in r["asha"].items()
        )
        print(
            f"seed {seed}: random best {r['random']['best']:.4f} in {r['random']['epochs']} epochs; {shown}", flush=True
        )
    variants = {}
    for name in VARIANTS:
        ratios = [r["asha"][name]["compute_ratio"] for r in seeds]
        reached = sum(1 for r in seeds if r["asha"][name]["reached"])
        variants[name] = {
            "seeds": len(seeds),
            "reached": reached,
            "median_ratio": statistics.median(ratios),
            "max_ratio": max(ratios),
            "goal_met": reached == len(seeds) and max(ratios) <= 1 / 3,
        }
    summary = {
        "variants": variants,
        "configs_trained": len(curves),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    result = {
        "config": {"trials": args.trials, "epochs": args.epochs, "parallelism": args.parallelism, "seeds": args.seeds},
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
