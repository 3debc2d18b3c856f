"""The chaos harness's tally: running counters are folded into pass/fail counts once each."""

from __future__ import annotations

from bench.chaos.invariants import Check


def test_fold_counts_each_new_check_once_and_new_failures_as_failed() -> None:
    check = Check()
    folded = check.fold(5, ["a"], (0, 0))
    assert (check.passed, check.failed, folded) == (4, 1, (5, 1))
    folded = check.fold(9, ["a", "b", "c"], folded)
    assert (check.passed, check.failed, check.examples, folded) == (6, 3, ["a", "b", "c"], (9, 3))
    assert check.fold(9, ["a", "b", "c"], folded) == folded and (check.passed, check.failed) == (6, 3)
