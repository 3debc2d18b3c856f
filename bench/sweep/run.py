"""ASHA vs random search on a real objective: the digits example's MLP trained by real torch, on digits or MNIST-1D.

Every arm is a sweep of the digits example (examples/sweep-digits.yaml, or --example examples/sweep-mnist1d.yaml:
its space, objective, ASHA settings and trial template) driven by the operator's own `sweep.decide()` (the same code
the SweepController runs), on a simulated cluster of as many trial slots as the example's `parallelism` (or
--parallelism), where every running trial trains one epoch per round:

- random: random search, `trials` full trials (the example's maxTrials unless --trials), no early stopping (the
  baseline);
- random + asha: the same random sampler (same seed: trial n has the same parameters) with the example's ASHA,
  the objective target set to the random arm's final best, and up to 4x the trials: we measure the compute
  (epochs trained, pruned trials' epochs included) until the ASHA sweep's best completed trial matches the
  baseline's best;
- tpe + asha: the same with the example's algorithm (TPE), i.e. the example as a user runs it.

The objective is the example's (`best_val_accuracy`, maximise: the best accuracy on the validation split so far,
whose model the trainer keeps). The test split is never used for selection; the test accuracy of the model each
arm hands over is reported next to it. Training is deterministic (fixed data split and init), so each
configuration is trained once and its curves are shared by the arms of a seed: an arm is charged for every epoch
it trains, never for another arm's. Seeds run in parallel processes (one Curves each). Over the seeds: per seed
(the ratio, within a third or not) and the mean over seeds (`mean_crossing`: the share of compute at which the mean
of the arms' best values reaches the mean of random search's final bests, as learning-curve papers report it).
Results: bench/results/NAME.json and NAME.md (--name, default sweep).

    python -m bench.sweep.run [--example PATH] [--seeds 0 1 ... 7] [--trials N] [--parallelism N] [--jobs 2]
        [--name sweep]
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
from elastic_trainer.examples import digits

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


def mean_crossing(
    traces: Sequence[Sequence[Sequence[float]]], budgets: Sequence[float], target: float, direction: str
) -> float | None:
    """The aggregate over seeds, as learning-curve papers plot it (e.g. ASHA's): the smallest share f of random
    search's compute at which the mean over seeds of an arm's best completed value (each seed after f of its own
    random search's epochs) is at least `target` (the mean of random search's final bests). None: never, or some
    seed had completed no trial yet at every share where the mean would have been enough."""
    as_shares = [[[spent / budget, v] for spent, v in trace] for trace, budget in zip(traces, budgets, strict=True)]
    for share in sorted({point[0] for trace in as_shares for point in trace}):
        values = [best_within(trace, share) for trace in as_shares]
        if all(v is not None for v in values) and reached(
            statistics.fmean(v for v in values if v is not None), target, direction
        ):
            return share
    return None


def summarise(
    arms: Sequence[Mapping[str, Any]], direction: str, randoms: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """One variant over the seeds. Each arm: reached, compute_ratio (its epochs / random's), best_at_third and
    random_at_third (bests after a third of random's epochs), trace. An arm that never reached the target counts as
    infinitely expensive (None in median/max when it decides them). With `randoms` (random search's arm of each
    seed, in the same order): `mean_ratio`, the share of compute at which the mean over seeds reaches random
    search's mean final best (mean_crossing), and those two means."""
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
        **(_means(arms, randoms, direction) if randoms else {}),
    }


def _means(arms: Sequence[Mapping[str, Any]], randoms: Sequence[Mapping[str, Any]], direction: str) -> dict[str, Any]:
    target = statistics.fmean(r["best"] for r in randoms)
    share = mean_crossing([a["trace"] for a in arms], [r["epochs"] for r in randoms], target, direction)
    return {
        "random_mean_best": target,
        "mean_best": statistics.fmean(a["best"] for a in arms if a["best"] is not None),
        "mean_ratio": share,
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


def _dataset(args: Sequence[Any]) -> str:
    """The --dataset of a trial template's args (the example's default: digits)."""
    items = [str(a) for a in args]
    return items[items.index("--dataset") + 1] if "--dataset" in items[:-1] else "digits"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(EXAMPLE.parents[1]))
    except ValueError:
        return str(path)


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
        f"# Sweep benchmark: ASHA vs random search ({cfg.get('dataset', 'digits')} MLP, real torch)",
        "",
        f"Every arm is {cfg['example']} run through `sweep.decide()` (the SweepController's logic) with "
        f"{cfg['parallelism']} trials at a time. Space: {_space(cfg['parameters'])}; trial args: `{args}` "
        f"(a full trial is {cfg['epochs']} epochs). Objective: `{cfg['metric']}` ({cfg['direction']})"
        + (
            f", the best accuracy on the validation split ({cfg.get('validation_samples', 360)} samples) so far, "
            "whose model the trainer keeps"
            if cfg["metric"] == "best_val_accuracy"
            else f" (an ablation; {cfg['example']} uses {cfg['example_metric']})"
        )
        + f"; `test acc` is the test accuracy ({cfg.get('test_samples', 360)} samples, never used for selection "
        "unless it is the objective) of "
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
        "| variant | median ratio | worst ratio | reached | ratio <= 1/3 | ratio <= 1/3 in every seed | "
        "mean over seeds reaches random's mean best at |",
        "|---|---:|---:|---:|---:|:---:|---:|",
    ]
    for name, s in result["summary"]["variants"].items():
        mean = "-" if "mean_ratio" not in s else _ratio(s["mean_ratio"])
        lines.append(
            f"| {name} | {_ratio(s['median_ratio'])} | {_ratio(s['max_ratio'])} | {s['reached']}/{s['seeds']} | "
            f"{s['within_third']}/{s['seeds']} | {'yes' if s['goal_met'] else 'no'} | {mean} |"
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
        "Mean over seeds (how learning-curve papers such as ASHA's report it): the share of random search's compute "
        "after which the mean of an arm's best completed value over the seeds (each seed's arm after that share of "
        "its own random search's epochs) is at least the mean of random search's final bests"
        + "".join(
            f"; {name}: {_ratio(v['mean_ratio'])} (means at the end: {_fmt(v['mean_best'])} against "
            f"{_fmt(v['random_mean_best'])})"
            for name, v in s["variants"].items()
            if "mean_ratio" in v
        )
        + ".",
        "",
        f"Configurations trained (curves shared between the arms of a seed): {s['configs_trained']}; wall time "
        f"{s['wall_s']:.0f} s ({s['jobs']} processes) on {result['machine']}.",
        "",
        f"Reproduce: `python -m bench.sweep.run{_cli(cfg)}`"
        + (" (part of `make bench-sweep`)" if cfg["metric"] == cfg["example_metric"] else "")
        + ". The reading is in docs/sweeps.md (Benchmark).",
    ]
    return "\n".join(lines) + "\n"


def _cli(cfg: Mapping[str, Any]) -> str:
    """The arguments of bench.sweep.run that differ from its defaults for this run."""
    out = "" if cfg["example"] == "examples/sweep-digits.yaml" else f" --example {cfg['example']}"
    if cfg["metric"] != cfg["example_metric"]:
        out += f" --metric {cfg['metric']} --direction {cfg['direction']}"
    if cfg.get("name", "sweep") != "sweep":
        out += f" --name {cfg['name']}"
    if list(cfg["seeds"]) != list(range(8)):
        seeds = list(cfg["seeds"])
        out += (
            f" --seeds $(seq {seeds[0]} {seeds[-1]})"
            if seeds == list(range(seeds[0], seeds[-1] + 1))
            else (" --seeds " + " ".join(map(str, seeds)))
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    p.add_argument("--trials", type=int, help="random search's trials (ASHA arms: up to 4x; default: maxTrials)")
    p.add_argument("--parallelism", type=int, help="trials at a time (default: the example's)")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="seeds run in parallel processes")
    p.add_argument("--metric", help="an ablation: another metric of the example (val_loss, accuracy) instead of its")
    p.add_argument("--direction", choices=["maximize", "minimize"], help="with --metric")
    p.add_argument("--example", type=Path, default=EXAMPLE, help="another sweep of the digits example")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="sweep", help="results: OUT/NAME.json and OUT/NAME.md")
    args = p.parse_args(argv)
    example = load_example(args.example)
    if args.parallelism is None:
        args.parallelism = int(example["spec"]["parallelism"])
    if args.trials is None:
        args.trials = int(example["spec"]["maxTrials"])
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
    randoms = [r["random"] for r in seeds]
    variants = {name: summarise([r["asha"][name] for r in seeds], objective["direction"], randoms) for name in VARIANTS}
    summary = {
        "variants": variants,
        "configs_trained": sum(r["configs_trained"] for r in seeds),
        "wall_s": round(time.perf_counter() - started, 1),
        "jobs": args.jobs,
    }
    spec = example["spec"]
    epochs = int(spec["earlyStopping"]["asha"]["maxResource"])
    data = digits.load_data(0, _dataset(spec["trialTemplate"]["spec"]["template"]["args"]))
    sizes = len(data[3]), len(data[5])
    config = {"trials": args.trials, "parallelism": args.parallelism, "seeds": args.seeds, "epochs": epochs}
    result = {
        "config": {
            **config,
            "example": _relative(args.example),
            "name": args.name,
            "dataset": _dataset(spec["trialTemplate"]["spec"]["template"]["args"]),
            "validation_samples": sizes[0],
            "test_samples": sizes[1],
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
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
