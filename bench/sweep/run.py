"""ASHA vs random search on a real objective: the digits MLP trained by real torch.

Every arm is examples/sweep-digits.yaml (its space, objective, ASHA settings and trial template) driven by the
operator's own `sweep.decide()` (the same code the SweepController runs), on a simulated cluster of as many trial
slots as the example's `parallelism` (or --parallelism), where every running trial trains one epoch per round:

- random: random search, `trials` full trials, no early stopping (the baseline);
- random + asha: the same random sampler (same seed: trial n has the same parameters) with the example's ASHA,
  the objective target set to the random arm's final best, and up to 4x the trials: we measure the compute
  (epochs trained, pruned trials' epochs included) until the ASHA sweep's best completed trial matches the
  baseline's best;
- tpe + asha: the same with the example's algorithm (TPE), i.e. examples/sweep-digits.yaml as a user runs it.

The objective is the example's (`best_val_accuracy`, maximise: the best accuracy on the validation split so far,
whose model the trainer keeps). The test split is never used for selection; the test accuracy of the model each
arm hands over is reported next to it. Training is deterministic (fixed data split and init), so each
configuration is trained once and its curves are shared by the arms of a seed: an arm is charged for every epoch
it trains, never for another arm's. Seeds run in parallel processes (one Curves each).
Results: bench/results/sweep.json and sweep.md.

    python -m bench.sweep.run [--seeds 0 1 ... 7] [--trials 24] [--parallelism N] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.sweep.driver import EXAMPLE, Curves, load_example, run_sweep, sweep_manifest

RESULTS = Path(__file__).resolve().parents[1] / "results"

VARIANTS = {"random + asha": "random", "tpe + asha": "tpe"}
"""ASHA arms: name -> sampler. ASHA settings are the example's; tpe + asha is the example as a user runs it."""


def best_within(trace: Sequence[Sequence[float]], epochs: float) -> float | None:
    """The best completed value an arm had after `epochs` epochs of compute (None: no trial completed yet)."""
    found = None
    for spent, value in trace:
        if spent <= epochs:
            found = value
    return found


def reached(best: float | None, target: float, direction: str) -> bool:
    """Whether an arm's best completed value is at least as good as `target` (ties count: same objective)."""
    if best is None:
        return False
    return best >= target if direction == "maximize" else best <= target


def summarise(arms: Sequence[Mapping[str, Any]], direction: str) -> dict[str, Any]:
    """One variant over the seeds. Each arm: reached, compute_ratio (its epochs / random's), best_at_third and
    random_at_third (bests after a third of random's epochs). An arm that never reached the target counts as
    infinitely expensive (None in median/max when it decides them)."""
    ratios = [a["compute_ratio"] if a["reached"] else math.inf for a in arms]
    within = sum(1 for a in arms if a["reached"] and a["compute_ratio"] <= 1 / 3)
    not_worse = sum(
        1
        for a in arms
        if a["best_at_third"] is not None
        and (a["random_at_third"] is None or reached(a["best_at_third"], a["random_at_third"], direction))
    )
    return {
        "seeds": len(arms),
        "reached": sum(1 for a in arms if a["reached"]),
        "within_third": within,
        "at_third_not_worse": not_worse,  # equal compute: after 1/3 of random's epochs, at least random's best then
        "median_ratio": _finite(statistics.median(ratios)) if ratios else None,
        "max_ratio": _finite(max(ratios)) if ratios else None,
        "goal_met": bool(arms) and within == len(arms),
    }


def run_seed(
    seed: int, trials: int, parallelism: int, objective: Mapping[str, str] | None = None, example_path: Path = EXAMPLE
) -> dict[str, Any]:
    example = load_example(example_path)
    if objective:
        example["spec"]["objective"] = dict(objective)
    direction = example["spec"]["objective"]["direction"]
    curves = Curves()
    started = time.perf_counter()
    base = sweep_manifest(example, seed=seed, trials=trials, parallelism=parallelism, early_stopping=False)
    random_arm = run_sweep(base, curves)
    target = random_arm["best"]
    third = random_arm["epochs"] / 3
    random_arm["best_at_third"] = best_within(random_arm["trace"], third)
    out: dict[str, Any] = {"seed": seed, "random": random_arm, "target": target, "asha": {}}
    for name, algorithm in VARIANTS.items():
        spec = sweep_manifest(
            example, seed=seed, trials=4 * trials, parallelism=parallelism, early_stopping=True,
            algorithm=algorithm, target=target,
        )  # fmt: skip
        arm = run_sweep(spec, curves)
        arm["reached"] = reached(arm["best"], target, direction)
        arm["compute_ratio"] = arm["epochs"] / random_arm["epochs"]  # unrounded: 1/3 exactly is within a third
        arm["best_at_third"] = best_within(arm["trace"], third)
        arm["random_at_third"] = random_arm["best_at_third"]
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


def _space(parameters: Sequence[Mapping[str, Any]]) -> str:
    def one(p: Mapping[str, Any]) -> str:
        if p["type"] == "categorical":
            return f"{p['name']} in {{{', '.join(str(v) for v in p['values'])}}}"
        return f"{p['name']} {p['low']}-{p['high']}{' log-uniform' if p.get('log') else ''}"

    return "; ".join(one(p) for p in parameters)


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    asha = cfg["asha"]
    args = " ".join(str(a) for a in cfg["args"])
    lines = [
        "# Sweep benchmark: ASHA vs random search (digits MLP, real torch)",
        "",
        f"Every arm is {cfg['example']} run through `sweep.decide()` (the SweepController's logic) with "
        f"{cfg['parallelism']} trials at a time. Space: {_space(cfg['parameters'])}; trial args: `{args}` "
        f"(a full trial is {cfg['epochs']} epochs). Objective: `{cfg['metric']}` ({cfg['direction']})"
        + (
            ", the best accuracy on the validation split (360 samples) so far, whose model the trainer keeps"
            if cfg["metric"] == "best_val_accuracy"
            else f" (an ablation; examples/sweep-digits.yaml uses {cfg['example_metric']})"
        )
        + "; `test acc` is the test accuracy (360 samples, never used for selection unless it is the objective) of "
        "the model the best trial hands over. Random search runs "
        f"{cfg['trials']} full trials. Each ASHA variant (the example's settings: minResource {asha['minResource']}, "
        f"reductionFactor {asha['reductionFactor']}, maxResource {asha['maxResource']}; random + asha uses the same "
        "sampler and seed as random search, so trial n has the same parameters; tpe + asha is the example's "
        "algorithm) runs until its best *completed* trial is at least random search's final best (the sweep's "
        f"objective target), at most {4 * cfg['trials']} trials (one that does not get there has `reached` no, its "
        "ratio is what it spent, and it counts as infinitely expensive in the median and worst ratio). Compute = "
        "epochs trained, pruned and stopped trials included. `at 1/3` = the best completed value after a third of "
        "random search's compute (random search's own in its row).",
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
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    p.add_argument("--trials", type=int, default=24, help="random search's trials (ASHA arms: up to 4x)")
    p.add_argument("--parallelism", type=int, help="trials at a time (default: the example's)")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="seeds run in parallel processes")
    p.add_argument("--metric", help="an ablation: another metric of the example (val_loss, accuracy) instead of its")
    p.add_argument("--direction", choices=["maximize", "minimize"], help="with --metric")
    p.add_argument("--example", type=Path, default=EXAMPLE, help="an ablation: another sweep of the digits example")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    example = load_example(args.example)
    if args.parallelism is None:
        args.parallelism = int(example["spec"]["parallelism"])
    objective = dict(example["spec"]["objective"])
    objective.pop("target", None)
    if args.metric:
        objective = {"metric": args.metric, "direction": args.direction or objective["direction"]}
    started = time.perf_counter()
    seeds = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_seed, s, args.trials, args.parallelism, objective, args.example) for s in args.seeds]
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
    variants = {name: summarise([r["asha"][name] for r in seeds], objective["direction"]) for name in VARIANTS}
    summary = {
        "variants": variants,
        "configs_trained": sum(r["configs_trained"] for r in seeds),
        "wall_s": round(time.perf_counter() - started, 1),
        "jobs": args.jobs,
    }
    spec = example["spec"]
    epochs = int(spec["earlyStopping"]["asha"]["maxResource"])
    config = {"trials": args.trials, "parallelism": args.parallelism, "seeds": args.seeds, "epochs": epochs}
    result = {
        "config": {
            **config,
            "example": "examples/sweep-digits.yaml" if args.example == EXAMPLE else str(args.example),
            **objective,
            "example_metric": spec["objective"]["metric"],
            "parameters": spec["parameters"],
            "asha": spec["earlyStopping"]["asha"],
            "args": spec["trialTemplate"]["spec"]["template"]["args"],
        },
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
