"""decide(): creation up to parallelism and maxTrials, determinism and replay, early stopping, failures, target,
budget, grid, the promising trial, adoption, invalid specs. Driven through tests/unit/sweep/world.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from elastic_operator.api.tuningsweep import TrialRecord, TuningSweep
from elastic_operator.sweep import decide, invalid_status
from elastic_operator.sweep import study as study_mod
from elastic_operator.sweep.trials import STOP_ANNOTATION, from_job
from tests.unit.sweep.world import World, quadratic, sweep_json


def numbers_and_params(world: World) -> list[tuple[int, tuple[tuple[str, str], ...]]]:
    status = world.sweep["status"]
    return [(t["number"], tuple(sorted(t["params"].items()))) for t in status["trials"]]


def test_first_round_creates_parallelism_trials_recorded_before_they_exist() -> None:
    w = World(sweep_json(max_trials=5, parallelism=3), quadratic)
    plan = w.step()
    assert [c.number for c in plan.create] == [0, 1, 2]
    assert [c.name for c in plan.create] == ["sw-t0", "sw-t1", "sw-t2"]
    assert [t["state"] for t in plan.status["trials"]] == ["Pending"] * 3
    assert plan.status["nextTrialNumber"] == 3
    assert plan.status["phase"] == "Running"
    assert {e.reason for e in plan.events} == {"TrialCreated"}
    # the model accepts the status it produced
    TuningSweep.model_validate({**w.sweep, "status": plan.status})


@pytest.mark.parametrize("policy", ["none", "asha", "median"])
@pytest.mark.parametrize("algorithm", ["random", "tpe", "cmaes"])
def test_a_sweep_runs_exactly_max_trials_with_unique_numbers(algorithm: str, policy: str) -> None:
    w = World(sweep_json(algorithm=algorithm, policy=policy, max_trials=14, parallelism=4), quadratic)
    plan = w.run()
    assert plan.phase == "Succeeded"
    assert w.created == [f"sw-t{i}" for i in range(14)]
    trials = plan.status["trials"]
    assert [t["number"] for t in trials] == list(range(14))
    assert plan.counts.total == 14 and plan.counts.succeeded + plan.counts.pruned == 14
    assert plan.best is not None
    assert all(len(t["intermediate"]) <= 64 for t in trials)
    alive_max = max(sum(1 for t in p.status["trials"] if t["state"] in ("Pending", "Running")) for p in w.plans)
    assert alive_max <= 4


@pytest.mark.parametrize("algorithm", ["random", "tpe", "cmaes", "grid"])
def test_same_seed_and_history_give_the_same_suggestion(algorithm: str) -> None:
    params = [
        {"name": "x", "type": "float", "low": -5.0, "high": 5.0, "step": 0.5},
        {"name": "n", "type": "int", "low": 1, "high": 8},
    ]
    a = World(sweep_json(algorithm=algorithm, params=params, max_trials=30, parallelism=3, startup=3), quadratic)
    for _ in range(15):
        a.step()
    # replay the decision of every round from its recorded inputs: identical new trials
    sweep = copy.deepcopy(a.sweep)
    history = sweep["status"]["trials"]
    snapshot = [TrialRecord.model_validate(t) for t in history]
    model = TuningSweep.model_validate({k: v for k, v in sweep.items() if k != "status"})
    s1 = study_mod.suggest(model.spec, snapshot, 1, 3)
    s2 = study_mod.suggest(model.spec, snapshot, 1, 3)
    assert s1 == s2
    if algorithm != "grid":
        assert study_mod.suggest(model.spec, snapshot, 2, 3) != s1


def test_operator_restart_between_status_patch_and_creates_loses_and_repeats_nothing() -> None:
    w = World(sweep_json(max_trials=16, parallelism=4, policy="asha"), quadratic)
    for i in range(40):
        w.lose_creates = i % 3 == 1  # every third round "crashes" after writing status
        plan = w.step()
        if plan.phase != "Running":
            break
    w.lose_creates = False
    plan = w.run()
    assert plan.phase == "Succeeded"
    assert sorted(w.created) == sorted(f"sw-t{i}" for i in range(16))  # each trial created exactly once
    params = [p for _, p in numbers_and_params(w)]
    assert len(set(params)) == 16


def test_a_stale_status_replays_the_same_trials() -> None:
    """If the status write of a round is lost, the next round asks again from the same history: same trials."""
    w = World(sweep_json(max_trials=10, parallelism=2), quadratic)
    for _ in range(6):
        w.step()
    model = w.model()
    jobs = list(w.jobs.values())
    p1 = decide(model, jobs, w.now)
    p2 = decide(model, jobs, w.now)
    assert p1.create == p2.create and p1.status == p2.status


def test_asha_prunes_bad_trials_at_rungs_and_saves_compute() -> None:
    def obj(params: Any, epoch: int) -> float:
        return (float(params["x"]) - 1.0) ** 2 + 1.0 / epoch

    full = World(sweep_json(algorithm="random", max_trials=18, parallelism=3), obj, epochs=9)
    full.run()
    asha = World(
        sweep_json(algorithm="random", policy="asha", asha={"minResource": 1, "reductionFactor": 3}, max_trials=18,
                   parallelism=3), obj, epochs=9)  # fmt: skip
    plan = asha.run()
    assert plan.counts.pruned >= 6
    assert asha.epochs_trained < full.epochs_trained / 2
    pruned = [t for t in plan.status["trials"] if t["state"] == "Pruned"]
    # pruned at a rung (1, 3): their last recorded point is a rung and their value is the value there
    for t in pruned:
        last = max(int(k) for k in t["intermediate"])
        assert last in (1, 3)
        assert t["value"] == t["intermediate"][str(last)]
    events = [e for p in asha.plans for e in p.events if e.reason == "TrialPruned"]
    assert len(events) == plan.counts.pruned and "asha at epoch" in events[0].message
    # random search with the same seed asks the same points: ASHA's best is within reach of the full run's
    assert plan.best is not None and full.plans[-1].best is not None


def test_median_stops_trials_worse_than_the_median_after_warmup() -> None:
    def obj(params: Any, epoch: int) -> float:
        return float(params["x"]) ** 2 + 1.0 / epoch

    w = World(
        sweep_json(algorithm="random", policy="median", median={"startupTrials": 3, "warmup": 2, "interval": 1},
                   max_trials=15, parallelism=2), obj, epochs=8)  # fmt: skip
    plan = w.run()
    assert plan.counts.pruned >= 3
    for t in plan.status["trials"]:
        if t["state"] == "Pruned":
            assert max(int(k) for k in t["intermediate"]) >= 2  # never before warmup
    first_three = [t for t in plan.status["trials"] if t["number"] < 3]
    assert all(t["state"] == "Succeeded" for t in first_three)  # startup trials


def test_more_failures_than_allowed_fail_the_sweep_and_stop_running_trials() -> None:
    w = World(sweep_json(max_trials=20, parallelism=4, max_failed=1), quadratic, fail=lambda p: float(p["x"]) < 0)
    plan = w.run()
    assert plan.phase == "Failed"
    assert plan.counts.failed >= 2
    assert plan.status["trialCounts"]["total"] < 20
    conds = {c["type"]: c for c in plan.status["conditions"]}
    assert conds["Failed"]["status"] == "True" and conds["MaxFailedTrialsExceeded"]["status"] == "True"
    assert all(j["status"]["phase"] in ("Succeeded", "Failed") for j in w.jobs.values())
    reasons = {e.reason for p in w.plans for e in p.events}
    assert {"TrialFailed", "SweepFailed", "MaxFailedTrialsExceeded"} <= reasons


def test_target_reached_ends_the_sweep_and_stops_the_others() -> None:
    w = World(sweep_json(max_trials=40, parallelism=4, target=1.5), quadratic)
    plan = w.run()
    assert plan.phase == "Succeeded" and plan.stop_cause in ("TargetReached", "SweepFinished")
    assert plan.best is not None and plan.best.value <= 1.5
    assert plan.counts.total < 40
    stopped = [j for j in w.jobs.values() if j["metadata"]["annotations"].get(STOP_ANNOTATION)]
    assert all(j["metadata"]["annotations"][STOP_ANNOTATION] == "target reached" for j in stopped)
    assert any(c["type"] == "TargetReached" and c["status"] == "True" for c in plan.status["conditions"])
    # finished stays finished: another round changes nothing
    again = w.step()
    assert again.create == () and again.phase == "Succeeded"
    assert again.status["completionTime"] == plan.status["completionTime"]


def test_gpu_hour_budget_stops_creating_and_stops_running_trials() -> None:
    # 4 trials x 2 workers x 4 GPUs x 60 s a round = 0.53 GPU-hours a round
    w = World(sweep_json(max_trials=40, parallelism=4, gpus=4, budget={"gpuHours": 2.0}), quadratic, workers=2)
    plan = w.run()
    assert plan.phase == "Succeeded"
    assert plan.status["gpuHoursUsed"] >= 2.0
    assert plan.status["gpuHoursUsed"] < 2.0 + 0.6
    assert plan.counts.total < 40
    assert any(c["type"] == "BudgetExhausted" and c["status"] == "True" for c in plan.status["conditions"])
    assert {j["metadata"]["annotations"].get(STOP_ANNOTATION) for j in w.jobs.values()} >= {"budget exhausted"}


def test_deadline_stops_the_sweep() -> None:
    w = World(sweep_json(max_trials=40, parallelism=2, budget={"activeDeadlineSeconds": 600}), quadratic)
    plan = w.run()
    assert plan.stop_cause in ("BudgetExhausted", "SweepFinished") and plan.phase == "Succeeded"
    assert plan.counts.total < 40


def test_grid_runs_each_point_once_and_caps_max_trials() -> None:
    params = [
        {"name": "x", "type": "float", "low": 0.0, "high": 2.0, "step": 0.5},
        {"name": "n", "type": "categorical", "values": [1, 2]},
    ]
    w = World(sweep_json(algorithm="grid", params=params, max_trials=50, parallelism=3), quadratic, epochs=2)
    plan = w.run()
    assert plan.phase == "Succeeded" and plan.counts.total == 10
    seen = [tuple(sorted(t["params"].items())) for t in plan.status["trials"]]
    assert len(set(seen)) == 10
    assert plan.best is not None and plan.best.params == {"x": "1.0", "n": "1"}


def test_the_best_running_trial_is_promising_and_gets_the_priority_bump() -> None:
    w = World(sweep_json(max_trials=8, parallelism=4, priority=5), quadratic)
    for _ in range(4):
        plan = w.step()
    assert plan.promising is not None
    assert plan.priorities[plan.promising] == 6
    assert all(p == 5 for n, p in plan.priorities.items() if n != plan.promising)
    running = {t["number"]: t for t in plan.status["trials"] if t["state"] == "Running"}
    best = min(running.values(), key=lambda t: list(t["intermediate"].values())[-1])
    assert plan.promising == best["number"]
    assert all(c.priority == 5 for c in plan.create)


def test_a_trial_job_without_a_record_is_adopted_not_repeated() -> None:
    w = World(sweep_json(max_trials=6, parallelism=2), quadratic)
    w.step()
    w.step()
    status = w.sweep["status"]
    # lose the record of trial 1 (and pretend the counter never moved past it)
    status["trials"] = [t for t in status["trials"] if t["number"] != 1]
    status["nextTrialNumber"] = 1
    plan = w.step()
    numbers = [t["number"] for t in plan.status["trials"]]
    assert numbers == sorted(set(numbers)) and 1 in numbers
    assert all(c.number >= 2 for c in plan.create)
    assert any(e.reason == "TrialAdopted" for e in plan.events)


def test_a_succeeded_trial_without_the_metric_is_a_failure() -> None:
    w = World(sweep_json(max_trials=2, parallelism=2), quadratic)
    w.step()
    for job in w.jobs.values():
        job["status"] = {"phase": "Succeeded", "message": ""}
    plan = w.step()
    assert plan.counts.failed == 2
    assert all("without reporting loss" in e.message for e in plan.events if e.reason == "TrialFailed")


def test_a_vanished_running_trial_is_a_failure_and_a_vanished_pending_one_is_recreated() -> None:
    w = World(sweep_json(max_trials=4, parallelism=2), quadratic)
    w.step()
    w.step()  # both Running now
    del w.jobs["sw-t0"]
    plan = w.step()
    states = {t["number"]: t["state"] for t in plan.status["trials"]}
    assert states[0] == "Failed"
    w2 = World(sweep_json(max_trials=4, parallelism=2), quadratic)
    w2.lose_creates = True
    w2.step()
    w2.lose_creates = False
    plan2 = w2.step()
    assert [c.number for c in plan2.create] == [0, 1]


def test_trial_job_observation() -> None:
    job = from_job({
        "metadata": {"name": "sw-t3", "labels": {"elastic.training/trial": "3"},
                     "annotations": {"elastic.training/stop": "pruned", "elastic.training/promising": "true",
                                     "elastic.training/trial-params": '{"x": "0.5"}'}},
        "spec": {"template": {"resources": {"limits": {"nvidia.com/gpu": "2"}}}},
        "status": {"phase": "Running", "workers": {"current": 3},
                   "progress": {"epoch": 4, "step": 40, "metrics": {"loss": 0.25}}},
    })  # fmt: skip
    assert job.number == 3 and job.phase == "Running" and job.workers == 3 and job.gpus_per_worker == 2
    assert job.resource("epoch") == 4 and job.resource("step") == 40 and job.metrics == {"loss": 0.25}
    assert job.stop_reason == "pruned" and job.promising and job.params_text == {"x": "0.5"}
    bare = from_job({"metadata": {"name": "x"}})
    assert bare.number is None and bare.phase == "" and bare.resource("epoch") is None


def test_invalid_status_names_the_field_and_keeps_the_transition_time() -> None:
    patch, event = invalid_status(None, [("spec.parameters[0].low", "low must be below high")], 3, 1000.0)
    cond = patch["conditions"][-1]
    assert patch["phase"] == "Failed" and cond["type"] == "InvalidSpec" and cond["status"] == "True"
    assert "spec.parameters[0].low" in cond["message"] and event.reason == "InvalidSpec"
    again, _ = invalid_status(patch, [("spec.parameters[0].low", "low must be below high")], 3, 2000.0)
    assert again == patch


def test_spec_edit_after_success_resumes_the_sweep() -> None:
    w = World(sweep_json(max_trials=3, parallelism=3), quadratic, epochs=2)
    plan = w.run()
    assert plan.phase == "Succeeded"
    w.sweep["spec"]["maxTrials"] = 5
    w.sweep["metadata"]["generation"] = 2
    plan = w.step()
    assert plan.phase == "Running" and [c.number for c in plan.create] == [3, 4]
    assert w.run().counts.total == 5
