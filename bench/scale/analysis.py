"""Figures from what the bench recorded (pure functions, so they can be checked on hand-made timelines).

Definitions (bench/results/scale.md repeats them):
- a job *holds* capacity from its first worker pod's creation until its last worker pod finished;
- the cluster is *saturated* from the first moment every GPU is held (capacity_jobs jobs hold capacity);
- *sustained admissions/s*: admissions (status.phase left Queued) from the first submission until saturation,
  over that time: while nothing waits for capacity, only the operator (and the API server) limit the rate;
- *submission -> admission* (lag): for the jobs admitted before saturation, how long each waited from its
  submission until the operator admitted it: when the bench itself cannot submit faster than the operator admits
  (the sustained rate is then the arrival rate), a small lag says the operator kept up;
- *capacity freed -> pods created*: after saturation, each job whose workers all finished while another job waited
  frees exactly one job's worth of GPUs (every job has the same shape). The i-th such free is matched with the i-th
  admission (all its worker pods created) that came after it, first in, first out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class JobTimeline:
    submitted: float
    admitted: float | None  # status.phase left Queued
    pods_created: float | None  # every worker pod seen
    first_pod: float | None
    finished: float | None  # every worker pod finished


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def saturation_time(jobs: Iterable[JobTimeline], capacity_jobs: int) -> float | None:
    """When capacity_jobs jobs first held capacity at once (None if the cluster never filled up)."""
    events: list[tuple[float, int]] = []
    for j in jobs:
        if j.first_pod is not None:
            events.append((j.first_pod, 1))
            if j.finished is not None:
                events.append((j.finished, -1))
    holding = 0
    for t, delta in sorted(events, key=lambda e: (e[0], e[1])):  # a free at the same instant counts first
        holding += delta
        if holding >= capacity_jobs:
            return t
    return None


def sustained_admission_rate(jobs: Sequence[JobTimeline], saturated: float | None) -> tuple[float | None, int]:
    """(admissions per second until saturation, how many admissions that covers)."""
    start = min(j.submitted for j in jobs)
    admitted = sorted(j.admitted for j in jobs if j.admitted is not None)
    window = [t for t in admitted if saturated is None or t <= saturated]
    if len(window) < 2:
        return None, len(window)
    return len(window) / (window[-1] - start), len(window)


def admission_lags(jobs: Sequence[JobTimeline], saturated: float | None) -> list[float]:
    """Seconds from submission to admission of each job admitted before saturation (all, if it never came)."""
    return [
        j.admitted - j.submitted
        for j in jobs
        if j.admitted is not None and (saturated is None or j.admitted <= saturated)
    ]


def capacity_to_pods(jobs: Sequence[JobTimeline], saturated: float | None) -> list[float]:
    """Seconds from each capacity-freeing job end (with a job waiting) to the matching admission's pods created."""
    if saturated is None:
        return []
    frees = sorted(j.finished for j in jobs if j.finished is not None and j.finished > saturated)
    admissions = sorted(j.pods_created for j in jobs if j.pods_created is not None and j.pods_created > saturated)
    first_pods = sorted(j.first_pod if j.first_pod is not None else math.inf for j in jobs)
    submitted = sorted(j.submitted for j in jobs)
    out: list[float] = []
    k = 0
    for f in frees:
        waiting = _count_le(submitted, f) - _count_le(first_pods, f)
        if waiting <= 0:
            continue  # nobody needed this capacity
        while k < len(admissions) and admissions[k] < f:
            k += 1
        if k == len(admissions):
            break
        out.append(admissions[k] - f)
        k += 1
    return out


def _count_le(ordered: Sequence[float], t: float) -> int:
    import bisect

    return bisect.bisect_right(ordered, t)


def rate_timeline(times: Iterable[float], origin: float, bucket_s: float = 5.0) -> list[int]:
    """How many of `times` fell in each bucket_s-long interval after origin."""
    counts: list[int] = []
    for t in times:
        i = max(0, int((t - origin) // bucket_s))
        counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += 1
    return counts


# -- Prometheus text ---------------------------------------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


Samples = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of a metric's samples whose labels include `match`."""
    return sum(v for (n, labels), v in samples.items() if n == name and set(match.items()) <= set(labels))


def delta(after: Samples, before: Samples, name: str, **match: str) -> float:
    return total(after, name, **match) - total(before, name, **match)


def histogram_quantile(after: Samples, before: Samples, name: str, q: float) -> float | None:
    """Prometheus' histogram_quantile over the increase between two scrapes (linear within a bucket)."""
    buckets: list[tuple[float, float]] = []
    for (n, labels), v in after.items():
        if n != f"{name}_bucket":
            continue
        le = float(dict(labels)["le"])
        buckets.append((le, v - before.get((n, labels), 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # beyond the last finite bucket: its bound is all we know
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_le, prev_count = le, count
    return None


def by_label(after: Samples, before: Samples, name: str, label: str) -> dict[str, float]:
    """Growth of a counter between two scrapes, summed by one label, largest first."""
    out: dict[str, float] = {}
    for (n, labels), value in after.items():
        if n == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value - before.get((n, labels), 0.0)
    return dict(sorted(((k, v) for k, v in out.items() if v), key=lambda kv: -kv[1]))


def requests_by_call(after: Samples, before: Samples) -> dict[str, float]:
    """The API server's own count of requests between two scrapes (every client: kwok, scheduler, the operator,
    the bench), by verb and resource, largest first."""
    out: dict[str, float] = {}
    for (n, labels), value in after.items():
        if n == "apiserver_request_total":
            d = dict(labels)
            resource = d.get("resource", "") + (f"/{d['subresource']}" if d.get("subresource") else "")
            key = f"{d.get('verb', '')} {resource}"
            out[key] = out.get(key, 0.0) + value - before.get((n, labels), 0.0)
    return dict(sorted(((k, v) for k, v in out.items() if v), key=lambda kv: -kv[1]))
