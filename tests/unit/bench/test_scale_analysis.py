"""bench-scale's figures on hand-made timelines (bench/scale/analysis.py defines them)."""

from __future__ import annotations

import pytest

from bench.scale.analysis import (
    JobTimeline,
    admission_lags,
    by_label,
    capacity_to_pods,
    percentile,
    requests_by_call,
    saturation_time,
    scrape,
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


def request(verb: str, resource: str, subresource: str, code: int, value: int, group: str = "") -> str:
    labels = (
        f'code="{code}",component="apiserver",dry_run="",group="{group}",resource="{resource}",scope="resource",'
        f'subresource="{subresource}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}\n"


def watched(resource: str, value: int) -> str:
    return f'apiserver_watch_events_total{{group="",resource="{resource}",version="v1"}} {value}\n'


SERVER_BEFORE = request("POST", "pods", "", 201, 10) + request("PATCH", "pods", "status", 200, 5) + watched("pods", 100)
SERVER_AFTER = (
    request("POST", "pods", "", 201, 30)
    + request("POST", "pods", "", 409, 2)
    + request("PATCH", "pods", "status", 200, 65)
    + request("PUT", "leases", "", 200, 7, group="coordination.k8s.io")
    + watched("pods", 400)
    + watched("nodes", 9)
)


def test_the_api_servers_counts_are_growth_between_scrapes_by_call_largest_first() -> None:
    before, after = scrape(SERVER_BEFORE), scrape(SERVER_AFTER)
    calls = requests_by_call(after, before)
    assert calls == {"PATCH pods/status": 60.0, "POST pods": 22.0, "PUT leases": 7.0}  # codes summed
    assert list(calls) == ["PATCH pods/status", "POST pods", "PUT leases"]
    watch = by_label(after, before, "apiserver_watch_events_total", "resource")
    assert watch == {"pods": 300.0, "nodes": 9.0}
