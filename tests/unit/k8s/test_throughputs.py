"""The operator learns throughput by placement (workers, nodes they span), as the policy's snapshot expects."""

from __future__ import annotations

import pytest

from elastic_operator.k8s.snapshot import Throughputs

JOB = ("ns", "a")


def test_reports_from_two_placements_of_the_same_worker_count_are_kept_apart() -> None:
    t = Throughputs()
    t.record(JOB, 4, 1, 87.0)
    t.record(JOB, 4, 2, 44.0)  # keyed by worker count alone, this overwrote (well, dragged down) the 87
    assert t.by_job[JOB] == {(4, 1): 87.0, (4, 2): 44.0}


def test_repeated_reports_of_one_placement_are_smoothed() -> None:
    t = Throughputs()
    t.record(JOB, 2, 1, 100.0)
    t.record(JOB, 2, 1, 50.0)
    assert t.by_job[JOB][(2, 1)] == pytest.approx(85.0)


@pytest.mark.parametrize(("workers", "nodes", "rate"), [(0, 1, 10.0), (2, 0, 10.0), (2, 1, 0.0)])
def test_reports_without_a_placement_or_a_rate_teach_nothing(workers: int, nodes: int, rate: float) -> None:
    t = Throughputs()
    t.record(JOB, workers, nodes, rate)
    assert JOB not in t.by_job
