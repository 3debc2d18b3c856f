"""bench-scale's figures on hand-made timelines (bench/scale/analysis.py defines them)."""

from __future__ import annotations

import pytest

from bench.scale.analysis import (
    JobTimeline,
    admission_lags,
    capacity_to_pods,
    percentile,
    saturation_time,
    sustained_admission_rate,
)


def job(submitted: float, admitted: float | None, pods: float | None, finished: float | None = None) -> JobTimeline:
    return JobTimeline(submitted=submitted, admitted=admitted, pods_created=pods, first_pod=pods, finished=finished)


# capacity for 2 jobs: a and b fill it at t=2 and t=3; c waits until a finishes at 10, d until b finishes at 12
JOBS = [
    job(0.0, 1.0, 2.0, finished=10.0),
    job(0.0, 2.5, 3.0, finished=12.0),
    job(1.0, 10.5, 11.0, finished=20.0),
    job(1.0, 13.0, 14.5),
]


def test_saturation_is_when_every_slot_is_first_held() -> None:
    assert saturation_time(JOBS, 2) == 3.0
    assert saturation_time(JOBS, 3) is None


def test_sustained_rate_counts_admissions_until_saturation() -> None:
    rate, n = sustained_admission_rate(JOBS, 3.0)
    assert (n, rate) == (2, pytest.approx(2 / 2.5))


def test_capacity_to_pods_matches_each_free_with_the_next_admission() -> None:
    assert capacity_to_pods(JOBS, 3.0) == pytest.approx([1.0, 2.5])  # 10 -> 11, 12 -> 14.5; c's end: nobody waits


def test_admission_lag_covers_the_jobs_admitted_before_saturation() -> None:
    assert admission_lags(JOBS, 3.0) == [1.0, 2.5]
    assert admission_lags(JOBS, None) == [1.0, 2.5, 9.5, 12.0]
    assert percentile([1.0, 2.5], 0.5) == pytest.approx(1.75)
