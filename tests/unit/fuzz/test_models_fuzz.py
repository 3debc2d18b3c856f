"""Fuzz every function the operator calls on an object read from the API server.

Property: the function returns (a parsed object, or field-named issues) and never raises. What reads spec
(validate_trainingjob, validate_tuningsweep, parse_job) reports each problem as (field path, message) with a path
from the object's root; what reads status (from_status, from_job, invalid_status, decide) takes defaults for what
does not parse, and what it writes back is a status the API server accepts.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elastic_operator.api.trainingjob import TrainingJobStatus
from elastic_operator.api.tuningsweep import TuningSweepStatus
from elastic_operator.api.validation import status_issues, validate_trainingjob, validate_tuningsweep
from elastic_operator.k8s.jobs import parse_job
from elastic_operator.lifecycle.state import from_status, to_status
from elastic_operator.sweep import decide
from elastic_operator.sweep.decide import invalid_status
from elastic_operator.sweep.trials import from_job
from tests.unit.api.strategies import trainingjob_statuses, trainingjobs, tuningsweeps
from tests.unit.fuzz.bad_json import INT64_MAX, api_object, deeply_nested, json_values, load_examples, mutations

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

JOBS = load_examples("trainingjob-cpu.yaml", "trainingjob-gpu.yaml")
SWEEPS = load_examples("sweep-digits.yaml")
ROOT_FIELDS = {"<object>", "apiVersion", "kind", "metadata", "spec", "status"}


def bad_jobs() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(JOBS).flatmap(mutations),
        trainingjobs(with_status=True).flatmap(mutations),
        json_values(),
    )


def bad_sweeps() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(SWEEPS).flatmap(mutations), tuningsweeps().flatmap(mutations), json_values())


def assert_named(obj: Any, issues: list[tuple[str, str]]) -> None:
    """Every issue names a field: its path starts at a field of the object (or a required top-level one)."""
    assert issues, "an invalid object must say why"
    for path, message in issues:
        assert isinstance(path, str) and path and isinstance(message, str) and message, (path, message)
        roots = ROOT_FIELDS | (set(map(str, obj)) if isinstance(obj, dict) else set())
        assert any(path == r or path.startswith((r + ".", r + "[")) for r in roots), (path, obj)


def assert_writable(status: dict[str, Any], model: Any) -> None:
    """What the operator writes is valid JSON the API server would store: no NaN or infinity, integers within
    int64, and the status schema (the CRD is generated from `model`) holds."""
    text = json.dumps(status, allow_nan=False)

    def ints(value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            assert -(2**63) <= value <= INT64_MAX, value
        elif isinstance(value, dict):
            for v in value.values():
                ints(v)
        elif isinstance(value, list):
            for v in value:
                ints(v)

    ints(json.loads(text))
    written = {k: v for k, v in status.items() if v is not None}  # None deletes a field in a merge patch
    assert status_issues(model, written) == [], written


@FUZZ
@given(bad_jobs())
def test_validate_trainingjob_returns_a_model_or_named_issues(obj: Any) -> None:
    model, issues = validate_trainingjob(obj)
    if model is None:
        assert_named(obj, issues)
    else:
        assert issues == []


@FUZZ
@given(bad_sweeps())
def test_validate_tuningsweep_returns_a_model_or_named_issues(obj: Any) -> None:
    model, issues = validate_tuningsweep(obj)
    if model is None:
        assert_named(obj, issues)
    else:
        assert issues == []


@FUZZ
@given(bad_jobs())
def test_parse_job_yields_a_context_or_field_named_errors(raw: Any) -> None:
    obj = api_object(raw)
    ctx = parse_job(obj)
    if ctx.errors:
        assert_named(obj, ctx.errors)
    else:
        assert 1 <= ctx.facts.min_workers <= ctx.facts.max_workers
        assert ctx.template.image and ctx.template.command


@FUZZ
@given(st.one_of(trainingjob_statuses().flatmap(mutations), json_values()))
def test_a_corrupted_job_status_reads_as_defaults_and_is_repaired_by_the_next_write(status: Any) -> None:
    rt = from_status(status)
    assert_writable(to_status(rt), TrainingJobStatus)
    if isinstance(status, dict):
        for path, _ in status_issues(TrainingJobStatus, status):
            assert path.startswith("status"), path


@FUZZ
@given(st.sampled_from(JOBS).flatmap(lambda j: mutations({**j, "status": {}})))
def test_trial_jobs_of_any_shape_are_read_without_error(raw: Any) -> None:
    trial = from_job(api_object(raw, name="sw-t0"))
    assert trial.name == "sw-t0"
    assert all(isinstance(v, float) and math.isfinite(v) for v in trial.metrics.values())


@FUZZ
@given(json_values(), st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), min_size=1, max_size=3))
def test_an_invalid_sweep_gets_a_writable_status_whatever_its_old_status(
    old: Any, issues: list[tuple[str, str]]
) -> None:
    patch, event = invalid_status(old, issues, 3, 1_800_000_000.0)
    assert event.type == "Warning" and issues[0][0] in event.message
    assert_writable(patch, TuningSweepStatus)


@settings(FUZZ, max_examples=25)  # each example runs Optuna: keep the suite fast
@given(tuningsweeps(with_status=True), st.data())
def test_decide_survives_corrupted_sweep_status_and_trial_jobs(sweep_obj: dict[str, Any], data: st.DataObject) -> None:
    sweep_obj["status"] = data.draw(mutations(sweep_obj["status"]))
    sweep, issues = validate_tuningsweep(api_object(sweep_obj, name="sw"))
    assert sweep is not None and issues == []  # status never makes a sweep invalid; it reads as None instead
    base_trial: dict[str, Any] = {
        "metadata": {"labels": {"elastic.training/sweep": "sw", "elastic.training/trial": "0"}, "annotations": {}},
        "spec": sweep_obj["spec"]["trialTemplate"]["spec"],
        "status": {"phase": "Running", "progress": {"epoch": 2, "metrics": {"val_accuracy": 0.5}}},
    }
    trials = data.draw(st.lists(mutations(base_trial), max_size=3))
    jobs = [from_job(api_object(t, name=f"sw-t{i}")) for i, t in enumerate(trials)]
    plan = decide(sweep, jobs, 1_800_000_000.0)
    assert_writable(plan.status, TuningSweepStatus)


# -- explicit edge cases (regressions of what the fuzzing found) -----------------------------------------------------


def test_regression_status_with_text_slot_and_bad_time_reads_as_defaults() -> None:
    """from_status raised ValueError/KeyError on these, and every planning round failed for every job."""
    status = {
        "phase": "Bogus",
        "rescaleGeneration": "7",
        "startTime": "not a time",
        "lastRescaleTime": 1e300,
        "restarts": ["workerFailed"],
        "controller": {
            "placement": [{"slot": "x", "node": "n1"}, {"node": "n2"}, {"slot": 1, "node": "n1"}, "junk"],
            "members": [1, "2", -3, 1],
            "leaving": [{"slot": 2, "since": "yesterday"}],
            "recentFailures": ["2026-11-26t00:00:00z", None, "x"],
        },
    }
    rt = from_status(status)
    assert rt.phase == "Queued" and rt.rescale_generation == 0 and rt.start_time is None
    assert [(s.slot, s.node) for s in rt.placement] == [(1, "n1")]
    assert rt.members == (1,) and [x.slot for x in rt.leaving] == [2] and len(rt.recent_failures) == 1
    assert_writable(to_status(rt), TrainingJobStatus)
    paths = [p for p, _ in status_issues(TrainingJobStatus, status)]
    assert "status.controller.placement[0].slot" in paths and "status.startTime" in paths


def test_deeply_nested_values_are_issues_not_recursion_errors() -> None:
    job = dict(JOBS[0])
    job["spec"] = {**job["spec"], "template": {**job["spec"]["template"], "args": deeply_nested(5000)}}
    _, issues = validate_trainingjob(job)
    assert any(p.startswith("spec.template.args") for p, _ in issues), issues
    assert from_status({"controller": deeply_nested(5000)}).placement == ()


def test_regression_a_stray_trial_job_cannot_stop_its_sweep() -> None:
    """A TrainingJob anyone may create, named and labelled like trial 5000 of a sweep (or with a params annotation
    the sweep never wrote), made decide() raise in every round: the sweep stood still. It is left alone now."""
    sweep_obj = SWEEPS[0]
    sweep, _ = validate_tuningsweep(api_object(sweep_obj, name="sw"))
    assert sweep is not None

    def stray(number: int, params: dict[str, str]) -> dict[str, Any]:
        meta = {
            "labels": {"elastic.training/sweep": "sw", "elastic.training/trial": str(number)},
            "annotations": {"elastic.training/trial-params": json.dumps(params)},
        }
        return api_object({"metadata": meta, "status": {"phase": "Running"}}, name=f"sw-t{number}")

    plan = decide(sweep, [stray(5000, {}), stray(1000, {}), stray(3, {"x" * 100: "1", "lr": "y" * 40000})], 1.8e9)
    assert_writable(plan.status, TuningSweepStatus)
    recorded = {t["number"]: t for t in plan.status["trials"]}
    assert 5000 not in recorded and 1000 not in recorded
    assert recorded[3]["state"] == "Failed" and recorded[3]["params"] == {}
