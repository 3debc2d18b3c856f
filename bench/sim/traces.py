"""Workloads and per-application throughput models from the Pollux artifact's data (read in place, never copied).

Data: Qiao et al., "Pollux: Co-adaptive Cluster Scheduling for Goodput-Optimized Deep Learning", OSDI 2021;
petuum/adaptdl `osdi21-artifact` branch, Apache-2.0 (LICENSE-adaptdl beside the data); workloads derived from
Microsoft's Philly trace (CC-BY-4.0).

Throughput model of one application at a fixed global batch size B on n GPUs spread over k nodes:

- compute(l): time of one step on one GPU at local batch l, interpolated (linearly, extrapolated from the two
  nearest points) from the single-GPU rows (placement "1") of placements.csv;
- overhead(n, k): mean over local batches of step_time(n, k, l) - compute(l), from placements.csv (n = sum of the
  placement's digits, k = its length) and scalability.csv (num_replicas, num_nodes); for an (n, k) the traces do not
  have, the entries with the nearest k, then interpolated linearly in n (constant beyond the ends);
- the local batch B/n is split into ceil(B / (n * l_max)) accumulation steps when it exceeds the largest local batch
  the traces measured (l_max), as Pollux does;
- iteration time = accum * compute(B / (n * accum)) + overhead(n, k); throughput = B / iteration time (samples/s).

Work of a job: the iterations its application needs at its batch size to reach the end of validation-<B>.csv (the
last row's `iteration` + 1), times B, in samples. The nearest batch size with a file stands in if B has none.
"""

from __future__ import annotations

import csv
import math
import os
from bisect import bisect_left
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = "ELASTIC_TRAINING_POLLUX_DATA"


def data_dir() -> Path:
    return Path(os.environ.get(ENV) or REPO.parent / "shared" / "data" / "pollux")


@dataclass(frozen=True)
class TraceJob:
    name: str
    arrival: float
    app: str
    replicas: int
    batch: int


def shift_arrivals(trace: list[TraceJob], seconds: float) -> list[TraceJob]:
    """The same jobs with two of every three (in arrival order, all but the 1st, 4th, 7th, ...) arriving `seconds`
    later: a perturbation that keeps the load and mix but changes which round sees each arrival. Scheduling runs
    are chaotic (one different decision changes every later one), so a result that holds only for the exact
    arrival times is noise."""
    if seconds == 0:
        return list(trace)
    ordered = sorted(trace, key=lambda j: (j.arrival, j.name))
    return [replace(j, arrival=j.arrival + (seconds if i % 3 else 0.0)) for i, j in enumerate(ordered)]


def workload(load: str, index: int) -> list[TraceJob]:
    folder = "workloads" if load == "1.0" else "workloads-0.5"
    path = data_dir() / folder / f"workload-{index}.csv"
    with path.open() as f:
        return [
            TraceJob(r["name"], float(r["time"]), r["application"], int(r["num_replicas"]), int(r["batch_size"]))
            for r in csv.DictReader(f)
        ]


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    if len(xs) == 1:
        return ys[0]
    i = bisect_left(xs, x)
    if i < len(xs) and xs[i] == x:
        return ys[i]
    i = min(max(i, 1), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class AppModel:
    def __init__(self, app: str):
        folder = data_dir() / "traces" / app
        rows: dict[tuple[int, int], dict[int, list[float]]] = {}
        with (folder / "placements.csv").open() as f:
            for r in csv.DictReader(f):
                digits = [int(c) for c in r["placement"]]
                key = (sum(digits), len(digits))
                rows.setdefault(key, {}).setdefault(int(r["local_bsz"]), []).append(float(r["step_time"]))
        with (folder / "scalability.csv").open() as f:
            for r in csv.DictReader(f):
                key = (int(r["num_replicas"]), int(r["num_nodes"]))
                rows.setdefault(key, {}).setdefault(int(r["local_bsz"]), []).append(float(r["step_time"]))
        single = rows[(1, 1)]
        self.lbs = sorted(single)
        self.compute_t = [sum(single[b]) / len(single[b]) for b in self.lbs]
        self.l_max = max(b for table in rows.values() for b in table)
        overhead: dict[int, dict[int, float]] = {}  # k -> n -> seconds
        for (n, k), table in rows.items():
            if n == 1:
                continue
            gaps = [sum(ts) / len(ts) - self.compute(b) for b, ts in table.items()]
            overhead.setdefault(k, {})[n] = max(0.0, sum(gaps) / len(gaps))
        self.overhead_by_k = {k: (sorted(v), [v[n] for n in sorted(v)]) for k, v in overhead.items()}
        self.validation = {int(p.stem.split("-")[1]): p for p in folder.glob("validation-*.csv")}

    def compute(self, local: float) -> float:
        return max(1e-4, _interp([float(b) for b in self.lbs], self.compute_t, local))

    def overhead(self, n: int, k: int) -> float:
        if n <= 1:
            return 0.0
        ks = sorted(self.overhead_by_k)
        nearest = min(ks, key=lambda kk: (abs(kk - k), kk))
        ns, ts = self.overhead_by_k[nearest]
        if n <= ns[0]:
            return ts[0]
        if n >= ns[-1]:
            return ts[-1]
        return _interp([float(x) for x in ns], ts, n)

    def throughput(self, batch: int, n: int, k: int) -> float:
        if n <= 0:
            return 0.0
        local = batch / n
        accum = max(1, math.ceil(local / self.l_max))
        step = accum * self.compute(local / accum) + self.overhead(n, max(1, k))
        return batch / step

    def work(self, batch: int) -> float:
        nearest = min(self.validation, key=lambda b: (abs(math.log(b / batch)), b))
        with self.validation[nearest].open() as f:
            last = list(csv.DictReader(f))[-1]
        return (int(last["iteration"]) + 1) * nearest


@cache
def app_model(app: str) -> AppModel:
    return AppModel(app)


@dataclass(frozen=True)
class Reference:
    policy: str
    load: str
    workload: str
    avg_jct_s: float


def references() -> list[Reference]:
    with (data_dir() / "reference-avg-jct.csv").open() as f:
        return [Reference(r["policy"], r["load"], r["workload"], float(r["avg_jct_s"])) for r in csv.DictReader(f)]
