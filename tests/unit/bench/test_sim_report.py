"""The simulator report's robustness section: arrivals shifted, targets counted per shift against the same shift's
static run, and each workload's range over the shifts."""

from __future__ import annotations

from typing import Any

import pytest

from bench.sim.run import _robustness_markdown, robustness
from bench.sim.traces import TraceJob, shift_arrivals


def test_shift_arrivals_moves_two_of_every_three_jobs_in_arrival_order() -> None:
    trace = [TraceJob(n, t, "toy", 1, 8) for n, t in [("c", 20.0), ("a", 0.0), ("b", 10.0), ("d", 30.0)]]
    shifted = {j.name: j.arrival for j in shift_arrivals(trace, 7.0)}
    assert shifted == {"a": 0.0, "b": 17.0, "c": 27.0, "d": 30.0}  # 1st and 4th stay, 2nd and 3rd move
    assert shift_arrivals(trace, 0.0) == trace
    assert [j.arrival for j in trace] == [20.0, 0.0, 10.0, 30.0]  # the input is not changed


def _row(load: str, wl: str, policy: str, jct: float, shift: float = 0.0) -> dict[str, Any]:
    row: dict[str, Any] = {"load": load, "workload": wl, "policy": policy, "avg_jct_s": jct}
    if shift:
        row["arrival_shift_s"] = shift
    return row


def test_robustness_counts_each_shift_against_its_own_static_run() -> None:
    refs: dict[tuple[str, str], float | None] = {("0.5", "workload-1"): 100.0, ("0.5", "workload-2"): 100.0}
    rows = [
        _row("0.5", "workload-1", "static", 300.0),
        _row("0.5", "workload-1", "elastic-goodput", 110.0),  # 2.73x static, 1.1x Pollux: both met
        _row("0.5", "workload-2", "static", 150.0),
        _row("0.5", "workload-2", "elastic-goodput", 130.0),  # 1.15x static, 1.3x Pollux: neither
    ]
    shifted = [
        _row("0.5", "workload-1", "static", 180.0, 7.0),  # static gets lucky under this shift:
        _row("0.5", "workload-1", "elastic-goodput", 125.0, 7.0),  # 1.44x of *its* static, 1.25x Pollux
        _row("0.5", "workload-2", "static", 150.0, 7.0),
        _row("0.5", "workload-2", "elastic-goodput", 90.0, 7.0),  # 1.67x, 0.9x: both met
    ]
    rob = robustness(rows, shifted, refs)
    per_shift = {r["arrival_shift_s"]: r for r in rob["by_shift"]["elastic-goodput"]}
    assert per_shift[0.0]["workloads_at_least_1_5x_static"] == "1/2"
    assert per_shift[0.0]["workloads_within_1_2x_pollux"] == "1/2"
    assert per_shift[7.0]["workloads_at_least_1_5x_static"] == "1/2"
    assert per_shift[7.0]["workloads_within_1_2x_pollux"] == "1/2"
    assert per_shift[7.0]["geomean_over_pollux"] == pytest.approx((1.25 * 0.9) ** 0.5, abs=1e-3)
    first = {r["workload"]: r for r in rob["ranges"]["elastic-goodput"]}["workload-1"]
    assert (first["x_static_min"], first["x_static_max"]) == (1.44, 2.727)
    assert (first["over_pollux_min"], first["over_pollux_max"]) == (1.1, 1.25)
    assert (first["at_least_1_5x_static"], first["within_1_2x_pollux"]) == ("1/2", "1/2")
    assert "elastic-fair" not in rob["by_shift"]  # a policy that was not run is not reported
    text = "\n".join(_robustness_markdown(rob))
    assert "| elastic-goodput | 7 | 1/2 | 1/2 |" in text and "| 0.5 | workload-1 | 1.44-2.727 | 1/2 |" in text


def test_no_shifted_runs_no_robustness_section() -> None:
    assert robustness([_row("0.5", "workload-1", "static", 1.0)], [], {}) == {}
    assert _robustness_markdown({}) == []
