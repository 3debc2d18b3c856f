"""The sweep benchmark's bookkeeping: what counts as reaching random search's best, and within what compute; and
that each arm is examples/sweep-digits.yaml with only the arm's knobs changed, its trials parsed by the example."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from bench.sweep.driver import EXAMPLE, load_example, sweep_manifest, trial_args
from bench.sweep.explore import (
    asha_compute,
    bootstrap,
    draw,
    mean_curve,
    oracle,
    promotable,
    rank_correlation,
    rungs_of,
)
from bench.sweep.run import best_within, mean_crossing, reached, summarise
from elastic_operator.api.validation import validate_tuningsweep


def test_best_within_is_the_last_improvement_not_after_the_budget() -> None:
    trace = [[27, 0.90], [54, 0.95], [200, 0.97]]
    assert best_within(trace, 26) is None
    assert best_within(trace, 27) == 0.90
    assert best_within(trace, 199.5) == 0.95
    assert best_within(trace, 648) == 0.97


def test_reached_counts_ties_and_respects_the_direction() -> None:
    assert reached(0.98, 0.98, "maximize") and reached(0.99, 0.98, "maximize")
    assert not reached(0.97, 0.98, "maximize")
    assert reached(0.10, 0.12, "minimize") and not reached(0.13, 0.12, "minimize")
    assert not reached(None, 0.5, "maximize")


def _arm(ratio: float, ok: bool, at_third: float | None = 0.9, random_at_third: float | None = 0.9) -> dict[str, Any]:
    return {"compute_ratio": ratio, "reached": ok, "best_at_third": at_third, "random_at_third": random_at_third}


def test_summarise_counts_an_unreached_seed_as_infinitely_expensive() -> None:
    s = summarise([_arm(0.2, True), _arm(0.3, True), _arm(0.1, False), _arm(0.5, True)], "maximize")
    assert s["reached"] == 3 and s["seeds"] == 4
    # within 1/3 needs reaching: the unreached 0.1 does not count
    assert s["within_third"] == 2 and not s["goal_met"]
    assert s["median_ratio"] == pytest.approx(0.4)  # of 0.2, 0.3, 0.5, inf
    assert s["max_ratio"] is None  # inf: not reached in some seed


def test_summarise_goal_met_only_when_every_seed_is_within_a_third() -> None:
    s = summarise([_arm(0.2, True), _arm(1 / 3, True)], "maximize")
    assert s["goal_met"] and s["within_third"] == 2 and s["max_ratio"] == pytest.approx(1 / 3)
    assert not summarise([_arm(0.2, True), _arm(0.34, True)], "maximize")["goal_met"]


def test_summarise_equal_compute_comparison_follows_the_direction() -> None:
    arms = [_arm(1, True, 0.2, 0.3), _arm(1, True, 0.4, 0.3), _arm(1, True, None, 0.3), _arm(1, True, 0.5, None)]
    assert summarise(arms, "minimize")["at_third_not_worse"] == 2  # 0.2 <= 0.3; 0.5 vs nothing yet
    assert summarise(arms, "maximize")["at_third_not_worse"] == 2  # 0.4 >= 0.3; 0.5 vs nothing yet
    assert math.isfinite(summarise(arms, "maximize")["median_ratio"])


def test_mean_crossing_is_the_first_share_where_the_mean_over_seeds_is_enough() -> None:
    # two seeds, random search spent 100 and 200 epochs; an arm's [epochs, best completed] traces
    traces = [[[10, 0.5], [30, 0.9]], [[40, 0.6], [100, 0.8]]]
    budgets = [100.0, 200.0]
    # shares: 0.1, 0.3 (seed 0), 0.2, 0.5 (seed 1); at 0.1 seed 1 has nothing completed yet
    assert mean_crossing(traces, budgets, 0.55, "maximize") == pytest.approx(0.2)  # (0.5 + 0.6) / 2
    assert mean_crossing(traces, budgets, 0.75, "maximize") == pytest.approx(0.3)  # (0.9 + 0.6) / 2
    assert mean_crossing(traces, budgets, 0.85, "maximize") == pytest.approx(0.5)  # (0.9 + 0.8) / 2
    assert mean_crossing(traces, budgets, 0.86, "maximize") is None
    # minimise: lower is better, and a seed that never completed a trial keeps the mean undefined
    assert mean_crossing([[[10, 0.3]], [[20, 0.1]]], [100.0, 100.0], 0.2, "minimize") == pytest.approx(0.2)
    assert mean_crossing([[[10, 0.3]], []], [100.0, 100.0], 1.0, "minimize") is None


def test_summarise_reports_the_mean_over_seeds_against_random_searchs_mean_best() -> None:
    arms = [
        {**_arm(0.4, True), "best": 0.9, "trace": [[40, 0.9]]},
        {**_arm(0.2, True), "best": 0.8, "trace": [[20, 0.8]]},
    ]
    randoms = [{"best": 0.9, "epochs": 100}, {"best": 0.7, "epochs": 100}]
    s = summarise(arms, "maximize", randoms)
    assert s["random_mean_best"] == pytest.approx(0.8) and s["mean_best"] == pytest.approx(0.85)
    assert s["mean_ratio"] == pytest.approx(0.4)  # at 0.2 seed 0 has nothing yet; at 0.4 the mean is 0.85
    assert "mean_ratio" not in summarise(arms, "maximize")


@pytest.mark.parametrize("early_stopping", [False, True])
def test_an_arm_is_the_example_with_only_its_knobs_changed(early_stopping: bool) -> None:
    example = load_example()
    doc = sweep_manifest(
        example, seed=3, trials=40, parallelism=4, early_stopping=early_stopping, algorithm="random", target=0.5
    )
    sweep, issues = validate_tuningsweep(doc)
    assert sweep is not None and not issues
    spec, ex = doc["spec"], example["spec"]
    assert spec["parameters"] == ex["parameters"] and spec["trialTemplate"] == ex["trialTemplate"]
    assert spec["objective"] == {**ex["objective"], "target": 0.5}
    assert spec["algorithm"]["name"] == "random" and spec["algorithm"]["seed"] == 3
    assert (spec["maxTrials"], spec["parallelism"], "budget" in spec) == (40, 4, False)
    if early_stopping:
        assert spec["earlyStopping"] == ex["earlyStopping"]
    else:
        assert spec["earlyStopping"]["policy"] == "none"


@pytest.mark.parametrize(("example", "dataset"), [("sweep-digits.yaml", "digits"), ("sweep-mnist1d.yaml", "mnist1d")])
def test_a_trial_trains_what_its_rendered_args_say(example: str, dataset: str) -> None:
    example = load_example(EXAMPLE.parent / example)
    sweep, _ = validate_tuningsweep(sweep_manifest(example, seed=0, trials=8, parallelism=2, early_stopping=True))
    assert sweep is not None
    args = trial_args(sweep, {"lr": 0.0123, "hidden": 77, "batch_size": 32})
    assert (args.lr, args.hidden, args.batch_size, args.dataset) == (0.0123, 77, 32, dataset)
    assert args.epochs == example["spec"]["earlyStopping"]["asha"]["maxResource"]


def test_explore_promotes_like_optunas_successive_halving() -> None:
    assert promotable(0.5, [0.5], 3)  # alone: it is the best
    assert not promotable(0.4, [0.5, 0.4], 3)  # fewer than 3 recorded: only the best goes on
    assert promotable(0.8, [0.1, 0.2, 0.8, 0.3, 0.4, 0.5], 3) and promotable(0.5, [0.1, 0.2, 0.8, 0.3, 0.4, 0.5], 3)
    assert not promotable(0.4, [0.1, 0.2, 0.8, 0.3, 0.4, 0.5], 3)  # the best 6 // 3 = 2 go on


def test_explore_asha_stops_bad_trials_at_the_first_rung_and_stops_at_the_target() -> None:
    bad, good = [0.1] * 9, [0.5, 0.6, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9]
    # one slot: the good trial first, then bad ones stopped after one epoch each
    spent, best = asha_compute([good, bad, bad, bad], 2.0, rungs=[1, 3], reduction_factor=3, parallelism=1)
    assert (spent, best) == (9 + 3, 0.9)
    # the target met by the first completed trial ends the sweep there
    assert asha_compute([good, bad, bad], 0.9, rungs=[1, 3], reduction_factor=3, parallelism=1) == (9, 0.9)


def test_rank_correlation_looks_at_the_best_third_only() -> None:
    # nine curves: the best three by final value keep their order from epoch 1, or reverse it; the rest are noise
    rest = [[0.9 - 0.01 * i, 0.1] for i in range(6)]
    kept = [[0.1 * i, 0.5 + 0.1 * i] for i in range(3)]
    flipped = [[0.3 - 0.1 * i, 0.5 + 0.1 * i] for i in range(3)]
    assert rank_correlation(kept + rest, 1) == pytest.approx(1.0)
    assert rank_correlation(flipped + rest, 1) == pytest.approx(-1.0)


def test_explore_rungs_are_optunas_below_a_full_trial() -> None:
    assert rungs_of(1, 3, 27) == [1, 3, 9]
    assert rungs_of(1, 4, 27) == [1, 4, 16]
    assert rungs_of(3, 3, 27) == [3, 9]


def test_explore_draws_distinct_configurations_when_the_pool_allows() -> None:
    pool = [[float(i)] for i in range(10)]
    seq = draw(pool, 10, random.Random(0))
    assert sorted(c[0] for c in seq) == list(range(10))  # a permutation: no configuration twice
    assert len(draw(pool, 25, random.Random(0))) == 25  # a small pool: with replacement


def test_explore_oracle_ranks_every_rung_as_the_end_and_mean_curve_averages_models() -> None:
    assert oracle([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4]]) == [[0.5] * 3, [0.4] * 3]
    assert mean_curve([[1.0, 2.0], [3.0, 6.0]]) == [2.0, 4.0]


def test_explore_oracle_finds_a_late_bloomer_that_the_real_curves_prune() -> None:
    # the winner starts worst and ends best: ASHA on its real curve stops it at the first rung; the oracle keeps it
    late = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.99]
    early = [[0.5 + 0.01 * i] * 9 for i in range(5)]
    pool = [*early, late]
    real = bootstrap(pool, trials=6, rungs=[1, 3], reduction_factor=3, parallelism=1, draws=20, seed=0)
    flat = bootstrap(oracle(pool), trials=6, rungs=[1, 3], reduction_factor=3, parallelism=1, draws=20, seed=0)
    assert flat["reached"] == 1.0
    assert real["reached"] < 1.0


def test_a_results_file_says_the_command_that_reproduces_it() -> None:
    from bench.sweep.run import _cli

    base = {"example": "examples/sweep-digits.yaml", "name": "sweep", "metric": "m", "example_metric": "m"}
    assert _cli({**base, "seeds": list(range(8))}) == ""
    other = {**base, "example": "examples/sweep-mnist1d.yaml", "name": "x", "seeds": list(range(16))}
    assert _cli(other) == " --example examples/sweep-mnist1d.yaml --name x --seeds $(seq 0 15)"
    ablation = {**base, "metric": "val_loss", "direction": "minimize", "seeds": [1, 5]}
    assert _cli(ablation) == " --metric val_loss --direction minimize --seeds 1 5"
