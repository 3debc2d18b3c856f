"""The simulator's ideal bound: no policy beats it, and it is exact where it should be (a lone job at its best size)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from bench.sim import engine
from bench.sim.bound import best_placement, lower_bound, srpt_completions
from bench.sim.engine import Cluster, simulate
from bench.sim.run import POLICIES
from bench.sim.traces import TraceJob, app_model, data_dir, workload
from elastic_operator.policy import Plan, Snapshot

TINY = Cluster(nodes=2, gpus_per_node=2, interval_s=60.0, restart_penalty_s=30.0)


class Toy:
    """Compute splits over GPUs; one fixed cost for any communication and one per extra node. With these numbers
    a job is fastest on 2 GPUs of one node (3 GPUs over two nodes pay more than they gain)."""

    def throughput(self, batch: int, n: int, k: int) -> float:
        step = 1.0 * batch / n + (0.0 if n == 1 else 0.1 * batch) + 0.35 * batch * (k - 1)
        return batch / step

    def work(self, batch: int) -> float:
        return 1000.0 * batch


def toy(app: str) -> Toy:
    return Toy()


def test_srpt_preempts_for_the_shorter_arrival() -> None:
    # a long job from 0, a short one from 1: the short runs 1-3, the long one resumes and ends at 12
    assert srpt_completions([(0.0, 10.0), (1.0, 2.0)]) == [12.0, 3.0]
    assert srpt_completions([(5.0, 1.0), (0.0, 1.0)]) == [6.0, 1.0]


def test_best_placement_finds_two_gpus_on_one_node() -> None:
    best = best_placement(Toy(), 10, TINY)
    alone_at_2 = 30.0 + 10_000.0 / Toy().throughput(10, 2, 1)
    assert best.seconds == pytest.approx(alone_at_2)
    assert best.gpu_seconds == pytest.approx(30.0 + 10_000.0)  # one GPU wastes nothing on communication


def test_bound_is_exact_for_a_lone_job_that_static_runs_at_its_best_size() -> None:
    trace = [TraceJob("a", 10.0, "toy", 2, 10)]
    result = simulate(trace, POLICIES["static"], TINY, toy)
    bound = lower_bound(trace, TINY, toy)
    # seen at the round at 60 s, 30 s restart, then the work at 2 GPUs on one node
    assert result.jct[0] == pytest.approx(bound.alone_s)
    assert bound.alone_s == pytest.approx(50.0 + 30.0 + 10_000.0 / Toy().throughput(10, 2, 1))


TRACE = [
    TraceJob("a", 0.0, "toy", 2, 8),
    TraceJob("b", 30.0, "toy", 1, 8),
    TraceJob("c", 100.0, "toy", 2, 16),
    TraceJob("d", 200.0, "toy", 4, 4),
    TraceJob("e", 900.0, "toy", 1, 8),
    TraceJob("f", 950.0, "toy", 2, 8),
]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_no_policy_beats_the_bound_on_a_busy_tiny_cluster(policy: str) -> None:
    bound = lower_bound(TRACE, TINY, toy)
    result = simulate(TRACE, POLICIES[policy], TINY, toy)
    avg = sum(result.jct) / len(result.jct)
    assert bound.capacity_s > 0 and bound.alone_s > 0
    assert bound.avg_jct_s <= avg + 1e-6


@pytest.mark.skipif(not (data_dir() / "workloads").is_dir(), reason="no Pollux data")
@pytest.mark.parametrize("policy", ["static", "elastic-goodput"])
def test_no_policy_beats_the_bound_on_a_pollux_workload(policy: str) -> None:
    trace = workload("0.5", 1)
    result = simulate(trace, POLICIES[policy], Cluster())
    assert lower_bound(trace, Cluster(), app_model).avg_jct_s <= sum(result.jct) / len(result.jct)


def test_the_simulator_reports_each_jobs_remaining_work_as_trainers_do(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[float]] = {}
    real_plan = engine.plan

    def recording(snapshot: Snapshot, now: float) -> Plan:
        for j in snapshot.jobs:
            assert j.remaining_samples is not None
            seen.setdefault(j.key, []).append(j.remaining_samples)
        return real_plan(snapshot, now)

    monkeypatch.setattr(engine, "plan", recording)
    simulate(TRACE, POLICIES["elastic-goodput"], TINY, toy)
    assert set(seen) == {f"sim/{t.name}" for t in TRACE}
    for t in TRACE:
        left = seen[f"sim/{t.name}"]
        assert left[0] == pytest.approx(Toy().work(t.batch))  # nothing done before its first round
        assert all(b <= a for a, b in pairwise(left))  # work only ever gets done
        assert left[-1] < left[0]  # and some of it was done while it was planned for
