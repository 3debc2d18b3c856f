"""Placement-aware throughput: measurements keyed by (workers, nodes spanned), and the rules that use them.

The case behind it (the Pollux traces' YOLOv3 at batch 64): 87 samples/s on 4 GPUs of one node, 44 on 2 + 2, 54 on 2
GPUs of one node. Keyed by worker count alone, the latest report overwrote the other, and the policy spread the job
(or never packed it again)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elastic_operator.policy import Action, Settings, plan
from elastic_operator.policy.throughput import Curve
from tests.unit.policy.builders import NOW, job, node, snap

YOLO = {(2, 1): 54.0, (4, 1): 87.0, (4, 2): 44.0}  # faster on 1 node x 4 than on 2 nodes x 2


@pytest.mark.parametrize(
    ("measured", "n", "k", "expected"),
    [
        (YOLO, 4, 1, 87.0),  # measured placements are kept side by side
        (YOLO, 4, 2, 44.0),
        (YOLO, 4, 3, 44.0),  # beyond the node counts measured at 4 workers: the nearest one
        (YOLO, 3, 1, 70.5),  # between 2 and 4 workers on one node
        (YOLO, 3, 2, 49.0),  # on two nodes: 4 workers stand in with what they did on two
        ({(4, 2): 44.0, (8, 2): 60.0}, 6, 2, 52.0),
        ({(2, 1): 10.0, (4, 1): 19.0}, 3, 2, 14.5),  # nothing measured on two nodes: one node's values stand in
        # this placement's own measurements count where they promise more than the others: 7 workers on 4 nodes
        # do not say what 4 on one node would do ((1, 1) and the Amdahl default: 27.9 x 4 / 1.15)
        ({(1, 1): 27.9, (7, 4): 62.6}, 4, 1, pytest.approx(27.9 * 4 / 1.15)),
        # ... while on 4 nodes its own (7, 4) extrapolated (40/s) promises less than interpolating between 1 and 7
        ({(1, 1): 27.9, (7, 4): 62.6}, 4, 4, pytest.approx((27.9 + 62.6) / 2)),
        ({}, 4, 2, pytest.approx(4 / 1.15)),  # no measurement: the default curve, placement ignored
    ],
)
def test_curve_by_placement(measured, n, k, expected) -> None:  # type: ignore[no-untyped-def]
    assert Curve(job("a", max=8, throughput=measured), Settings()).at(n, k) == expected


def test_marginal_gain_counts_where_the_worker_lands() -> None:
    curve = Curve(job("a", max=8, throughput=YOLO), Settings())
    assert curve.marginal_gain(3, 1, 1) == pytest.approx(87.0 / 70.5 - 1)  # a 4th on its own node: +23 %
    assert curve.marginal_gain(3, 1, 2) == pytest.approx(44.0 / 70.5 - 1)  # a 4th on another node: -38 %


@pytest.mark.parametrize(
    ("free_n1", "free_n2", "target", "nodes"),
    [
        (2, 4, 4, ("n1", "n1")),  # room on its own node: packed to 4 x 1 (87/s)
        (0, 4, None, ()),  # only on another node: 2 + 2 measured 44/s, less than the 54 it has: not spread
        (1, 4, 3, ("n1",)),  # room for one more on its own node: 3 on one node (70/s expected); a 4th would spread
    ],
)
def test_a_job_faster_packed_is_packed_and_not_spread(free_n1, free_n2, target, nodes) -> None:  # type: ignore[no-untyped-def]
    a = job("a", max=8, running_on=["n1", "n1"], throughput=YOLO)
    s = snap([node("n1", gpus=2 + free_n1), node("n2", gpus=free_n2)], [a], grow=True)
    d = plan(s, NOW).decision("ns/a")
    if target is None:
        assert d is None or d.action is not Action.GROW
    else:
        assert d is not None and (d.action, d.target, d.add_nodes) == (Action.GROW, target, nodes)


def test_a_job_that_spreading_helps_is_spread() -> None:
    a = job("a", max=8, running_on=["n1"] * 4, throughput={(4, 1): 40.0, (8, 2): 80.0})
    d = plan(snap([node("n1", gpus=4), node("n2", gpus=4)], [a], grow=True), NOW).decision("ns/a")
    assert d is not None and (d.action, d.target, d.add_nodes) == (Action.GROW, 8, ("n2",) * 4)


@pytest.mark.parametrize(
    ("running_on", "measured", "target"),
    [
        # 2 + 2 on two nodes at 44/s, 2 on one node measured 54/s: shed the 2 of one node
        (["n1", "n1", "n2", "n2"], YOLO, 2),
        # keyed by count alone the rule could not tell: 4 workers measured 87/s (on one node) is not what 2 + 2 do
        (["n1", "n1", "n1", "n1"], YOLO, None),
        # 3 + 1: shedding 1 leaves 3 on one node, and 3 on one node was measured faster than 3 + 1
        (["n1", "n1", "n1", "n2"], {(3, 1): 60.0, (4, 2): 44.0}, 3),
        # 2 + 2: shedding 1 leaves 2 + 1, never measured (its 3 on one node says nothing about it)
        (["n1", "n1", "n2", "n2"], {(3, 1): 60.0, (4, 2): 44.0}, None),
    ],
)
def test_a_spread_that_ran_slower_is_shed(running_on, measured, target) -> None:  # type: ignore[no-untyped-def]
    a = job("a", max=8, running_on=running_on, throughput=measured)
    d = plan(snap([node("n1", gpus=4), node("n2", gpus=4)], [a], grow=True), NOW).decision("ns/a")
    if target is None:
        assert d is None or d.action is not Action.SHRINK
    else:
        assert d is not None and (d.action, d.target) == (Action.SHRINK, target)
        assert len({w.node for w in a.workers if w.slot not in d.remove_slots}) == 1  # what is left is packed


@pytest.mark.parametrize(
    ("recipient_measured", "moved"),
    [
        ({(1, 1): 20.0, (2, 1): 40.0}, 1),  # nothing says spreading hurts it: a worker moves to it on n2
        ({(1, 1): 20.0, (2, 1): 40.0, (2, 2): 15.0}, 0),  # 1 + 1 over two nodes measured slower than 1: no move
    ],
)
def test_rebalance_does_not_spread_a_job_onto_a_slower_placement(recipient_measured, moved) -> None:  # type: ignore[no-untyped-def]
    # the donor is a wide job whose last worker adds 1 %; its only worker the recipient could use is on n2
    donor = job("big", max=8, running_on=["n2"] * 4, created=1, throughput={(1, 1): 100.0, (3, 1): 290, (4, 1): 293})
    small = job("small", max=4, running_on=["n1"], created=2, throughput=recipient_measured)
    s = snap([node("n1", gpus=1), node("n2", gpus=4)], [donor, small], grow=True, rescale_pause_s=5.0)
    p = plan(s, NOW)
    grown = p.decision("ns/small")
    if moved:
        assert grown is not None and (grown.action, grown.target, grown.add_nodes) == (Action.GROW, 2, ("n2",))
    else:
        assert grown is None and p.decision("ns/big") is None


def test_a_just_admitted_job_without_measurements_grows_on_its_own_node_only() -> None:
    # two fresh jobs share node a; what is left is one GPU on b. Before, growth put a worker of one of them there
    # (no measurement said spreading costs anything), and a YOLOv3 job started 2 + 1 over two nodes at 34/s.
    nodes = [node("a", gpus=4), node("b", gpus=1)]
    p = plan(snap(nodes, [job("j1", max=4, created=1), job("j2", max=4, created=2)], grow=True), NOW)
    placed = [n for d in p.changes for n in d.add_nodes]
    assert sorted(placed) == ["a"] * 4


def test_rebalance_judges_each_move_where_it_lands() -> None:
    # Two recipients gain alike on the nodes they use; the donor's worker next to "packs" stays on its node, but
    # "spreads" could only get one on another node, where it measured slower than alone. Together the two moves
    # would still pay (the first gains more than the second loses), so the check is per move, not only the sum.
    donor = job("big", max=8, running_on=["n1"] + ["n3"] * 3, created=1, throughput={(3, 1): 295.0, (4, 2): 300.0})
    packs = job("packs", max=2, running_on=["n1"], created=2, throughput={(1, 1): 20.0, (2, 1): 40.0})
    spreads = job("spreads", max=2, running_on=["n2"], created=3, throughput={(1, 1): 20.0, (2, 1): 40.0, (2, 2): 15.0})
    nodes = [node("n1", gpus=2), node("n2", gpus=1), node("n3", gpus=3)]
    p = plan(snap(nodes, [donor, packs, spreads], grow=True, rescale_pause_s=5.0), NOW)
    assert p.decision("ns/packs") is not None and p.decision("ns/packs").add_nodes == ("n1",)  # type: ignore[union-attr]
    assert p.decision("ns/spreads") is None


_PLACEMENTS = st.tuples(st.integers(1, 6), st.integers(1, 3)).filter(lambda p: p[1] <= p[0])


@settings(max_examples=300, deadline=None)
@given(
    measured=st.lists(st.dictionaries(_PLACEMENTS, st.floats(1.0, 100.0), max_size=6), min_size=2, max_size=2),
    placed=st.lists(st.lists(st.sampled_from(["n1", "n2", "n3"]), min_size=1, max_size=4), min_size=2, max_size=2),
    free=st.lists(st.integers(0, 3), min_size=3, max_size=3),
    mode=st.sampled_from(["fair", "goodput"]),
)
def test_no_job_grows_onto_a_placement_it_expects_slower(
    measured: list[dict[tuple[int, int], float]], placed: list[list[str]], free: list[int], mode: str
) -> None:
    """Two jobs with random placement-keyed measurements on three small nodes (growth and rebalance both in play):
    every grow goes to a placement expected faster than the one the job has. (Hypothesis found a rebalance move
    that slowed its recipient down because the donor, spanning one node less, expected to gain more.)"""
    jobs = [
        job(f"j{i}", max=8, running_on=on, created=i, throughput=tp)
        for i, (tp, on) in enumerate(zip(measured, placed, strict=True))
    ]
    used = {n: sum(on.count(n) for on in placed) for n in ("n1", "n2", "n3")}
    nodes = [node(n, gpus=used[n] + f) for n, f in zip(("n1", "n2", "n3"), free, strict=True)]
    s = snap(nodes, jobs, grow=True, grow_mode=mode, rescale_pause_s=5.0)
    for d in plan(s, NOW).changes:
        if d.action is Action.GROW:
            assert float(d.inputs["expected_after"]) > float(d.inputs["expected_before"]), d
