"""One table per rule of the policy, on small readable snapshots."""

from __future__ import annotations

from dataclasses import replace

import pytest

from elastic_operator.policy import (
    Action,
    Phase,
    Settings,
    Snapshot,
    Taint,
    Toleration,
    apply_plan,
    plan,
)
from elastic_operator.policy.fit import Cluster
from elastic_operator.policy.throughput import Curve, amdahl, remaining_time, service_weight
from tests.unit.policy.builders import NOW, gpus, job, node, snap


def decision_of(s: Snapshot, name: str, now: float = NOW):  # type: ignore[no-untyped-def]
    d = plan(s, now).decision(f"ns/{name}")
    assert d is not None, f"no decision for {name}"
    return d


# -- admission: a gang at min_workers, per-node fit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "usage", "the_job", "admitted", "why"),
    [
        ([node("n1", gpus=4)], {}, job("a", min=2, gpus=2), True, "fits"),
        ([node("n1", gpus=4)], {}, job("a", min=3, gpus=2), False, "needs 3 x 2 nvidia.com/gpu = 6, 4 free"),
        (
            [node("n1", gpus=4), node("n2", gpus=4)],
            {"n1": gpus(2), "n2": gpus(2)},
            job("a", gpus=4),
            False,
            "fragmented: 4 free nvidia.com/gpu on 2 nodes but each worker needs 4 on one node",
        ),
        ([node("n1", gpus=4), node("n2", gpus=4)], {"n1": gpus(2)}, job("a", gpus=4), True, "fits"),
        ([node("n1", gpus=2), node("n2", gpus=2)], {}, job("a", min=2, gpus=2), True, "fits"),  # spans nodes
        ([node("n1", gpus=8, schedulable=False)], {}, job("a"), False, "no schedulable, ready node"),
        ([node("n1", gpus=8, ready=False)], {}, job("a"), False, "no schedulable, ready node"),
        ([node("n1", labels={"pool": "a100"})], {}, job("a", selector={"pool": "h100"}), False, "node selector"),
        ([node("n1", labels={"pool": "h100"})], {}, job("a", selector={"pool": "h100"}), True, "fits"),
        ([node("n1", taints=[Taint("gpu", "yes")])], {}, job("a"), False, "tolerations"),
        (
            [node("n1", taints=[Taint("gpu", "yes")])],
            {},
            job("a", tolerations=[Toleration("gpu", "Equal", "yes", "NoSchedule")]),
            True,
            "fits",
        ),
        ([node("n1", taints=[Taint("gpu", "", "PreferNoSchedule")])], {}, job("a"), True, "fits"),
        (
            [node("n1", taints=[Taint("x", "", "NoExecute")])],
            {},
            job("a", tolerations=[Toleration(operator="Exists")]),
            True,
            "fits",
        ),
        ([node("n1", gpus=4, cpu=1000)], {}, job("a", min=2, gpus=1, cpu=600), False, "cpu"),
    ],
)
def test_admission(nodes, usage, the_job, admitted, why) -> None:  # type: ignore[no-untyped-def]
    d = decision_of(snap(nodes, [the_job], usage), "a")
    assert d.action is (Action.ADMIT if admitted else Action.WAIT)
    assert why in d.reason
    if admitted:
        assert d.target == the_job.min_workers == len(d.add_nodes)
    else:
        assert d.add_nodes == () and d.inputs["queue_position"] == 1


def test_gang_prefers_one_node_and_the_tightest() -> None:
    s = snap([node("big", gpus=8), node("small", gpus=4), node("tiny", gpus=2)], [job("a", min=3)])
    assert decision_of(s, "a").add_nodes == ("small", "small", "small")


def test_queue_order_priority_then_age_with_aging() -> None:
    jobs = [job("old-low", created=0), job("new-high", priority=1, created=3000), job("mid-low", created=10)]
    s = snap([node("n1", gpus=0)], jobs)
    assert [e.job for e in plan(s, 3600).queue] == ["ns/new-high", "ns/old-low", "ns/mid-low"]
    aged = snap([node("n1", gpus=0)], jobs, aging_per_hour=2.0)  # old-low waited 1 h: 2 points beats 1 + 0.3
    queue = plan(aged, 3600).queue
    assert [e.job for e in queue] == ["ns/old-low", "ns/mid-low", "ns/new-high"]
    assert (queue[2].position, queue[2].depth, queue[2].text) == (3, 3, "position 3 of 3")


# -- backfill --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "small", "admitted", "why"),
    [
        ("off", job("small", created=2), False, "no backfill"),
        ("safe", job("small", created=2), False, "would delay ns/big"),
        ("safe", job("small", created=2, tolerations=[Toleration("pool", "Exists")]), True, "cannot use"),
        ("safe", job("small", created=2, priority=-1), True, "it can take them back"),
        ("safe", job("small", created=2, priority=-1, may_requeue=False), False, "would delay"),
        ("greedy", job("small", created=2), True, "backfill"),
        ("safe", job("small", created=2, gpus=5), False, "does not fit"),
    ],
)
def test_backfill(mode, small, admitted, why) -> None:  # type: ignore[no-untyped-def]
    nodes = [node("g1", gpus=4), node("g2", gpus=4), node("c1", gpus=2, taints=[Taint("pool", "small")])]
    big = job("big", min=3, gpus=4, created=1)
    s = snap(nodes, [big, small], {"g1": gpus(2)}, backfill=mode)
    p = plan(s, NOW)
    assert p.decision("ns/big").action is Action.WAIT  # type: ignore[union-attr]
    d = p.decision("ns/small")
    assert d is not None and d.action is (Action.ADMIT if admitted else Action.WAIT)
    assert why in d.reason


# -- reclaim ---------------------------------------------------------------------------------------------------


def test_reclaim_shrinks_lower_priority_toward_min_and_admits_head() -> None:
    low = job("low", min=1, max=4, running_on=["n1"] * 4, priority=0, last_rescale=NOW - 1, cooldown=600)
    head = job("head", min=2, priority=1)
    p = plan(snap([node("n1", gpus=4)], [low, head]), NOW)
    assert p.decision("ns/low").action is Action.SHRINK  # type: ignore[union-attr]
    assert p.decision("ns/low").target == 2  # type: ignore[union-attr]  # only what the head needs
    assert p.decision("ns/head").action is Action.ADMIT  # type: ignore[union-attr]
    assert "reclaim" in p.decision("ns/head").reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("victim", "head_priority", "expected"),
    [
        (dict(priority=0, min=1, max=4), 0, Action.SHRINK),  # equal priority may shrink
        (dict(priority=0, min=1, max=4, may_shrink=False), 1, Action.REQUEUE),
        (dict(priority=0, min=1, max=4, may_shrink=False), 0, None),  # equal priority is never requeued
        (dict(priority=0, min=4, max=4), 1, Action.REQUEUE),  # at its minimum: requeue is all that is left
        (dict(priority=0, min=4, max=4, may_requeue=False), 1, None),
        (dict(priority=2, min=1, max=4), 1, None),  # never touch a higher priority
        (dict(priority=0, min=1, max=4, busy=True), 1, None),  # mid-rescale: left alone
    ],
)
def test_reclaim_rules(victim, head_priority, expected) -> None:  # type: ignore[no-untyped-def]
    v = job("victim", running_on=["n1"] * 4, **victim)
    head = job("head", min=1, priority=head_priority)
    p = plan(snap([node("n1", gpus=4)], [v, head]), NOW)
    d = p.decision("ns/victim")
    if expected is None:
        assert d is None
        assert p.decision("ns/head").action is Action.WAIT  # type: ignore[union-attr]
    else:
        assert d is not None and d.action is expected
        assert p.decision("ns/head").action is Action.ADMIT  # type: ignore[union-attr]


def test_reclaim_shrinks_before_it_requeues_and_frees_whole_nodes() -> None:
    nodes = [node("n1", gpus=4), node("n2", gpus=4), node("n3", gpus=4)]
    a = job("a", min=1, max=8, running_on=["n1", "n1", "n1", "n1", "n2", "n2"], created=1)
    b = job("b", min=2, max=2, running_on=["n2", "n2"], created=2, priority=-1)
    c = job("c", min=4, max=4, running_on=["n3"] * 4, created=3, priority=-1)
    head = job("head", gpus=4, min=1, created=9)
    p = plan(snap(nodes, [a, b, c, head]), NOW)
    # shrinking a frees all of n1 (4 slots) with no requeue
    da = p.decision("ns/a")
    assert da is not None and da.action is Action.SHRINK and da.target == 2
    assert p.decision("ns/b") is None and p.decision("ns/c") is None
    assert p.decision("ns/head").add_nodes == ("n1",)  # type: ignore[union-attr]
    removed = {a.workers[i].node for i in da.remove_slots}
    assert removed == {"n1"}


def test_requeue_only_when_shrinking_is_not_enough_and_youngest_lowest_first() -> None:
    nodes = [node("n1", gpus=4), node("n2", gpus=4)]
    a = job("a", min=3, max=4, running_on=["n1"] * 4, created=1, priority=0)
    b = job("b", min=4, max=4, running_on=["n2"] * 4, created=2, priority=0)
    head = job("head", gpus=4, min=1, priority=5, created=9)
    p = plan(snap(nodes, [a, b, head]), NOW)
    assert p.decision("ns/b").action is Action.REQUEUE  # type: ignore[union-attr]
    assert p.decision("ns/a") is None  # the shrink of a (1 GPU) was given back: not needed once b left
    assert p.decision("ns/head").add_nodes == ("n2",)  # type: ignore[union-attr]


# -- grow and hysteresis ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "grows"),
    [
        (dict(), True),
        (dict(last_rescale=NOW - 30, cooldown=60), False),  # in cooldown
        (dict(last_rescale=NOW - 61, cooldown=60), True),
        (dict(cooldown=4), True),  # a short cooldown: the payoff is judged over min_payoff_horizon_s (60 s)
        (dict(throughput={1: 100.0, 2: 101.0}), False),  # a second worker gains 1 %: not worth 5 s of 120
        (dict(throughput={1: 100.0, 2: 190.0}), True),
        (dict(throughput={1: 100.0, 2: 150.0}), True),  # +50 % for the default 5 s pause over 120 s pays
        (dict(throughput={1: 100.0, 2: 150.0}, rescale_pause_s=50.0), False),  # its measured 50 s pause does not
        (dict(throughput={1: 100.0, 2: 190.0}, remaining_samples=600.0), False),  # done in 6 s: not worth a pause
        (dict(throughput={1: 100.0, 2: 190.0}, remaining_samples=60000.0), True),
        (dict(busy=True), False),
    ],
)
def test_grow_hysteresis(kw, grows) -> None:  # type: ignore[no-untyped-def]
    a = job("a", min=1, max=2, running_on=["n1"], **kw)
    d = plan(snap([node("n1", gpus=2)], [a], grow=True), NOW).decision("ns/a")
    assert (d is not None and d.action is Action.GROW and d.target == 2 and d.add_nodes == ("n1",)) is grows


def test_grow_fair_shares_evenly_goodput_follows_gain() -> None:
    fast = job("fast", max=8, running_on=["n1"], throughput={1: 100.0, 2: 200.0, 3: 300.0}, created=1)
    slow = job("slow", max=8, running_on=["n1"], throughput={1: 100.0, 2: 110.0, 3: 115.0}, created=2)
    nodes = [node("n1", gpus=6)]
    fair = plan(snap(nodes, [fast, slow], grow=True, grow_mode="fair"), NOW)
    assert (fair.decision("ns/fast").target, fair.decision("ns/slow").target) == (3, 3)  # type: ignore[union-attr]
    good = plan(snap(nodes, [fast, slow], grow=True, grow_mode="goodput"), NOW)
    assert good.decision("ns/fast").target == 5  # type: ignore[union-attr]
    assert good.decision("ns/slow") is None  # 10 % for its 2nd worker is below what the pause costs


def test_admission_takes_spare_capacity_up_to_max() -> None:
    s = snap([node("n1", gpus=8)], [job("a", min=2, max=5)], grow=True)
    d = decision_of(s, "a")
    assert d.action is Action.ADMIT and d.target == 5 and d.add_nodes == ("n1",) * 5


def test_higher_priority_grows_first() -> None:
    lo = job("lo", max=4, running_on=["n1"], priority=0)
    hi = job("hi", max=4, running_on=["n1"], priority=1)
    p = plan(snap([node("n1", gpus=5)], [lo, hi], grow=True, grow_mode="fair"), NOW)
    assert p.decision("ns/hi").target == 4  # type: ignore[union-attr]
    assert p.decision("ns/lo") is None


def test_blocked_head_keeps_its_nodes_from_growth_it_could_not_reclaim() -> None:
    nodes = [node("n1", gpus=4), node("n2", gpus=4)]
    head = job("head", gpus=4, min=2, priority=1, created=5)
    mine = job("mine", max=4, running_on=["n1"], may_shrink=False)  # head could not shrink it back
    s = snap(nodes, [head, mine], {"n2": gpus(1)}, grow=True, grow_mode="fair")
    p = plan(s, NOW)
    assert p.decision("ns/head").action is Action.WAIT  # type: ignore[union-attr]
    assert p.decision("ns/mine") is None


def test_queue_within_a_class_least_attained_service_first_and_aging_still_wins() -> None:
    ran_long = job("ran-long", created=0, attained_s=50_000.0)  # requeued after a long run
    fresh = job("fresh", created=100)
    s = snap([node("n1", gpus=0)], [ran_long, fresh], aging_per_hour=1.0)
    assert [e.job for e in plan(s, 1000).queue] == ["ns/fresh", "ns/ran-long"]
    # an hour more of waiting lifts it a class: it goes first again, so it cannot starve behind fresh arrivals
    late = snap([node("n1", gpus=0)], [ran_long, job("fresh", created=3700)], aging_per_hour=1.0)
    assert [e.job for e in plan(late, 3800).queue] == ["ns/ran-long", "ns/fresh"]


def test_goodput_growth_prefers_the_job_with_less_attained_service() -> None:
    curve = {1: 100.0, 2: 200.0, 3: 300.0}
    old = job("old", max=4, running_on=["n1"], throughput=curve, created=1, attained_s=100_000.0)
    new = job("new", max=4, running_on=["n1"], throughput=curve, created=2, attained_s=0.0)
    nodes = [node("n1", gpus=4)]
    las = plan(snap(nodes, [old, new], grow=True, service_scale_s=20_000.0), NOW)
    assert las.decision("ns/new").target == 3 and las.decision("ns/old") is None  # type: ignore[union-attr]
    flat = plan(snap(nodes, [old, new], grow=True, service_scale_s=0.0), NOW)  # equal weights: a worker each (a
    # 2nd worker halves a job's remaining time, a 3rd shortens it by a third: the other job's 2nd comes first)
    assert flat.decision("ns/old").target == 2 and flat.decision("ns/new").target == 2  # type: ignore[union-attr]


def test_goodput_growth_prefers_the_job_with_less_work_left_when_jobs_report_it() -> None:
    curve = {1: 100.0, 2: 200.0, 3: 300.0}
    # "short" has run longer (least attained service alone would pick "long") but has 10 minutes of work left
    short = job("short", max=4, running_on=["n1"], throughput=curve, created=1, attained_s=50_000.0,
                remaining_samples=60_000.0)  # fmt: skip
    long = job("long", max=4, running_on=["n1"], throughput=curve, created=2, attained_s=0.0,
               remaining_samples=6_000_000.0)  # fmt: skip
    nodes = [node("n1", gpus=4)]
    srpt = plan(snap(nodes, [short, long], grow=True, remaining_scale_s=5_000.0), NOW)
    assert srpt.decision("ns/short").target == 3 and srpt.decision("ns/long") is None  # type: ignore[union-attr]
    grown = srpt.decision("ns/short")
    assert grown is not None and grown.inputs["remaining_s"] == 600.0 and "600 s of work left" in grown.reason
    las = plan(snap(nodes, [short, long], grow=True, remaining_scale_s=0.0), NOW)  # off: attained service decides
    assert las.decision("ns/long").target == 3 and las.decision("ns/short") is None  # type: ignore[union-attr]
    # weights: 600 s left -> 5000 / 5600; a job that reports no remaining work is weighed by attained service
    settings = Settings(remaining_scale_s=5_000.0, service_scale_s=20_000.0)
    assert service_weight(short, settings) == pytest.approx(5_000 / 5_600)
    assert service_weight(replace(short, remaining_samples=None), settings) == pytest.approx(20_000 / 70_000)
    assert service_weight(replace(short, remaining_samples=None), replace(settings, service_scale_s=0.0)) == 1.0


def test_remaining_time_is_work_left_at_the_current_placement_speed() -> None:
    settings = Settings()
    spread = job("j", max=4, running_on=["a", "b"], throughput={(2, 2): 50.0, (2, 1): 100.0}, remaining_samples=1e4)
    assert remaining_time(spread, settings) == 200.0  # at 2 workers on 2 nodes: 50/s, not the packed 100/s
    unmeasured = job("j", max=4, running_on=["a"], remaining_samples=1e4)
    assert remaining_time(unmeasured, settings) is None  # no speed known: no time
    assert remaining_time(replace(spread, remaining_samples=None), settings) is None
    estimated = job("j", max=4, running_on=["a", "a", "a"], throughput={(1, 1): 10.0, (2, 1): 20.0},
                    remaining_samples=3e3)  # fmt: skip
    assert remaining_time(estimated, settings) == 100.0  # 3 on one node: 30/s, linear between/beyond its points


def test_new_job_without_measurements_grows_packed_on_one_node() -> None:
    nodes = [node("a", gpus=4), node("b", gpus=4), node("c", gpus=1)]
    s = snap(nodes, [job("j", max=8)], grow=True)
    d = decision_of(s, "j")  # its minimum goes where its growth fits too ("a", not the tightest "c")
    assert d.action is Action.ADMIT and d.target == 4 and set(d.add_nodes) == {"a"}
    gang = decision_of(snap(nodes, [job("j", min=2, max=3)], grow=True), "j")
    assert gang.target == 3 and set(gang.add_nodes) == {"a"}  # the tightest node with room for all 3
    measured = snap(nodes, [job("j", max=8, throughput={1: 10.0, 2: 20.0})], grow=True)
    assert decision_of(measured, "j").target == 8  # once it has reported, it may span nodes
    off = snap(nodes, [job("j", max=8)], grow=True, first_on_one_node=False)
    assert decision_of(off, "j").target == 8


# -- bounds, back-off, determinism -----------------------------------------------------------------------------


def test_above_max_shrinks_from_the_most_spread_nodes() -> None:
    a = job("a", min=1, max=2, running_on=["n1", "n1", "n2"])
    d = decision_of(snap([node("n1"), node("n2")], [a]), "a")
    assert (d.action, d.target, d.remove_slots) == (Action.SHRINK, 2, (2,))


@pytest.mark.parametrize(("free", "expected"), [(4, Action.GROW), (0, Action.WAIT)])
def test_below_min_is_repaired_when_it_fits(free, expected) -> None:  # type: ignore[no-untyped-def]
    a = job("a", min=3, max=4, running_on=["n1"])
    d = decision_of(snap([node("n1", gpus=1), node("n2", gpus=free)], [a]), "a")
    assert d.action is expected
    if expected is Action.GROW:
        assert d.target == 3 and d.add_nodes == ("n2", "n2")


def test_requeued_job_backs_off() -> None:
    a = job("a", last_rescale=NOW - 10)
    s = snap([node("n1")], [a], requeue_backoff_s=60)
    assert decision_of(s, "a").action is Action.WAIT
    assert decision_of(s, "a", NOW + 51).action is Action.ADMIT


def test_other_phase_holds_capacity_but_is_not_planned() -> None:
    done = job("done", running_on=["n1"] * 4, phase=Phase.OTHER, max=8)
    p = plan(snap([node("n1", gpus=4)], [done, job("a")], grow=True), NOW)
    assert p.decision("ns/done") is None and p.decision("ns/a").action is Action.WAIT  # type: ignore[union-attr]


def test_apply_plan_semantics() -> None:
    low = job("low", min=1, max=4, running_on=["n1"] * 4)
    head = job("head", min=2, priority=1)
    s = snap([node("n1", gpus=4)], [low, head])
    after = apply_plan(s, plan(s, NOW), NOW)
    by_key = {j.key: j for j in after.jobs}
    assert [w.slot for w in by_key["ns/low"].workers] == [0, 1]
    assert by_key["ns/head"].phase is Phase.RUNNING and by_key["ns/head"].last_rescale == NOW
    assert [w.slot for w in by_key["ns/head"].workers] == [0, 1]
    assert plan(after, NOW).changes == ()
    requeued = apply_plan(s, replace(plan(s, NOW), decisions=()), NOW)
    assert requeued == s


# -- rebalance and useless workers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "big_kw", "small_kw", "moved"),
    [
        ("fair", dict(), dict(), 2),  # 5 + 1 -> 3 + 3
        ("fair", dict(priority=1), dict(), 0),  # never from a higher priority
        ("fair", dict(may_shrink=False), dict(), 0),
        ("fair", dict(last_rescale=NOW - 10, cooldown=60), dict(), 0),  # donor in cooldown
        ("goodput", dict(throughput={1: 100.0, 4: 400.0, 5: 410.0}), dict(throughput={1: 100.0}), 1),
        ("goodput", dict(throughput={4: 400.0, 5: 500.0}), dict(throughput={1: 100.0, 2: 110.0}), 0),
    ],
)
def test_rebalance(mode, big_kw, small_kw, moved) -> None:  # type: ignore[no-untyped-def]
    big = job("big", max=8, running_on=["n1"] * 5, created=1, **big_kw)
    small = job("small", max=8, running_on=["n1"], created=2, **small_kw)
    p = plan(snap([node("n1", gpus=6)], [big, small], grow=True, grow_mode=mode), NOW)
    d_big, d_small = p.decision("ns/big"), p.decision("ns/small")
    if moved == 0:
        assert d_big is None or d_big.action is not Action.SHRINK
        assert d_small is None
    else:
        assert d_big is not None and d_big.action is Action.SHRINK and d_big.target == 5 - moved
        assert d_small is not None and d_small.action is Action.GROW and d_small.target == 1 + moved
        assert d_big.inputs["for"] == "ns/small"


def test_workers_that_do_not_help_are_released() -> None:
    a = job("a", min=1, max=8, running_on=["n1"] * 6, throughput={4: 100.0, 6: 90.0})
    d = decision_of(snap([node("n1", gpus=8)], [a], grow=True), "a")
    assert (d.action, d.target) == (Action.SHRINK, 4)
    assert "do not help" in d.reason
    cooling = job("a", min=1, max=8, running_on=["n1"] * 6, throughput={4: 100.0, 6: 90.0}, last_rescale=NOW - 5)
    assert plan(snap([node("n1", gpus=8)], [cooling], grow=True), NOW).changes == ()


@pytest.mark.parametrize(
    ("big_tp", "small_tp", "moved"),
    [
        # 12 workers near their plateau: the last one adds 1 % to the big job, a 2nd worker nearly doubles the small
        # one. The big job's 30 s pause delays it by about 30 s, far less than the small one gains: move. (Counted in
        # 1-worker throughputs instead, the big job's pause would weigh 12 x as much and block the move.)
        ({1: 100.0, 8: 780.0, 11: 1000.0, 12: 1010.0}, {1: 100.0}, 1),
        # the small job would gain 15 % for 270 s: less than the big job's pause costs it
        ({1: 100.0, 8: 780.0, 11: 1000.0, 12: 1010.0}, {1: 100.0, 2: 115.0}, 0),
        # the big job scales linearly, but its 12th worker shortens its remaining time by 8 %, the small job's 2nd
        # by half: move (in 1-worker throughputs the big job's pause weighed 12 x and blocked it)
        ({1: 100.0, 11: 1100.0, 12: 1200.0}, {1: 100.0}, 1),
    ],
)
def test_rebalance_pays_off_in_each_jobs_own_time(big_tp, small_tp, moved) -> None:  # type: ignore[no-untyped-def]
    nodes = [node(f"n{i}", gpus=4) for i in range(1, 5)]
    big = job("big", max=12, running_on=["n1"] * 4 + ["n2"] * 4 + ["n3"] * 4, created=1, throughput=big_tp)
    small = job("small", max=2, running_on=["n4"], created=2, throughput=small_tp)  # room for one move at most
    s = snap(nodes, [big, small], usage={"n4": gpus(3)}, grow=True, rescale_pause_s=30.0, cooldown_s=300.0)
    p = plan(s, NOW)
    d_big, d_small = p.decision("ns/big"), p.decision("ns/small")
    if moved == 0:
        assert d_big is None or d_big.action is not Action.SHRINK
        assert d_small is None or d_small.action is not Action.GROW
    else:
        assert d_big is not None and (d_big.action, d_big.target) == (Action.SHRINK, 12 - moved)
        assert d_small is not None and (d_small.action, d_small.target) == (Action.GROW, 1 + moved)


@pytest.mark.parametrize(
    ("n", "gain"),
    [(0, 1.0), (1, 1.0), (2, 0.25), (3, 0.2), (4, 0.0)],  # 3 interpolates to 250; 5 and up extrapolate flat
)
def test_marginal_gain_is_a_fraction_of_the_speed_now(n, gain) -> None:  # type: ignore[no-untyped-def]
    curve = Curve(job("a", max=8, throughput={1: 100.0, 2: 200.0, 4: 300.0, 8: 300.0}), Settings())
    assert curve.marginal_gain(n) == pytest.approx(gain)


@pytest.mark.parametrize(
    ("wide_tp", "narrow_tp", "winner"),
    [
        # both scale linearly: the 9th worker shortens the wide job's remaining time by 1/8, the 2nd halves the
        # narrow one's (in 1-worker throughputs both gained 1.0 and the older, wide job won the tie)
        ({1: 100.0, 8: 800.0}, {1: 100.0}, "narrow"),
        # the narrow job barely scales (2 %), the wide one still gains 1/8
        ({1: 100.0, 8: 800.0}, {1: 100.0, 2: 102.0}, "wide"),
    ],
)
def test_goodput_gives_a_free_worker_to_the_job_it_speeds_up_most(wide_tp, narrow_tp, winner) -> None:  # type: ignore[no-untyped-def]
    wide = job("wide", max=16, running_on=["n1"] * 8, throughput=wide_tp, created=1)
    narrow = job("narrow", max=16, running_on=["n1"], throughput=narrow_tp, created=2)
    p = plan(snap([node("n1", gpus=10)], [wide, narrow], grow=True, service_scale_s=0.0), NOW)
    grown = [d.job for d in p.changes if d.action is Action.GROW]
    assert grown == [f"ns/{winner}"]


# YOLOv3 at batch 64 in the Pollux traces: 2 and 3 GPUs of one node accumulate gradients, 4 do not
DIP = {(1, 1): 27.9, (2, 1): 54.5, (3, 1): 53.7}


def test_an_unmeasured_whole_node_placement_is_expected_to_do_what_the_best_worker_does() -> None:
    settings = Settings()
    partial = Curve(job("y", max=8, throughput=DIP), settings, per_node=4)
    assert partial.at(4, 1) == pytest.approx(27.9 * amdahl(4, 0.05))  # its best worker (1 on 1 node), scaled
    assert partial.at(4, 2) == Curve(job("y", max=8, throughput=DIP), settings).at(4, 2)  # 2 + 2 fills no node
    unknown = Curve(job("y", max=8, throughput=DIP), settings)  # per_node 0: no optimism
    assert unknown.at(4, 1) < 60.0  # extrapolated flat from 2 and 3
    measured = Curve(job("y", max=8, throughput={**DIP, (4, 1): 40.0}), settings, per_node=4)
    assert measured.at(4, 1) == 40.0  # a measurement always wins
    assert Curve(job("y", max=8), settings, per_node=4).at(4, 1) == amdahl(4, 0.05)  # nothing measured: default


def test_per_node_is_the_most_common_whole_node_count_of_the_jobs_shape() -> None:
    tainted = node("d", gpus=8, taints=[Taint("dedicated", "x", "NoSchedule")])
    nodes = [node("a", gpus=4), node("b", gpus=4), node("c", gpus=8), tainted]
    cluster = Cluster(snap(nodes, []))
    assert cluster.per_node(job("one", gpus=1)) == 4  # two nodes of 4 against one of 8 (it may not use d)
    tolerant = job("tolerant", gpus=1, tolerations=[Toleration("dedicated", "Exists")])
    assert cluster.per_node(tolerant) == 8  # two of 4, two of 8: ties go to the larger
    assert cluster.per_node(job("only-d", gpus=1, selector={"kubernetes.io/hostname": "d"})) == 0  # none eligible
    assert cluster.per_node(job("two", gpus=2)) == 2
    assert cluster.per_node(job("big", gpus=16)) == 0  # fits no node


def test_growth_crosses_a_dip_when_the_run_of_workers_it_starts_pays() -> None:
    # at 2 on a 4-GPU node with 2 free: a 3rd worker alone adds nothing (53.7 < 54.5), 3rd and 4th together 60 %
    curve = {**DIP, (4, 1): 87.0}
    y = job("y", max=8, running_on=["n1", "n1"], throughput=curve, last_rescale=NOW - 1000)
    p = plan(snap([node("n1", gpus=4)], [y], grow=True), NOW)
    d = p.decision("ns/y")
    assert d is not None and (d.action, d.target, d.add_nodes) == (Action.GROW, 4, ("n1", "n1"))
    # the same job whose 4th worker would not pay either stays where it is
    flat = job("y", max=8, running_on=["n1", "n1"], throughput={**curve, (4, 1): 54.0}, last_rescale=NOW - 1000)
    assert plan(snap([node("n1", gpus=4)], [flat], grow=True), NOW).decision("ns/y") is None


def test_a_job_on_a_partial_node_tries_the_whole_node_it_has_never_run_at() -> None:
    y = job("y", max=8, running_on=["n1", "n1"], throughput=DIP, last_rescale=NOW - 1000)
    d = plan(snap([node("n1", gpus=4)], [y], grow=True), NOW).decision("ns/y")
    assert d is not None and (d.action, d.target) == (Action.GROW, 4)
    assert float(d.inputs["expected_after"]) > 90.0  # the whole-node estimate, not the flat extrapolation
