"""Expected throughput of a job by placement (workers, nodes they span), from its reports or a concave default.

Measurements are keyed by placement because spreading a job over more nodes can cost more than the extra workers
give: in the Pollux traces YOLOv3 at batch 64 runs at 87 samples/s on 4 GPUs of one node and 44 on 2 + 2. Keyed by
worker count alone, the latest report overwrote the other ("4 workers: 44/s" after a reclaim broke its node), and
the policy never learnt that packing pays.

The estimate at (n, k): a measured point as it is; otherwise the larger of two estimates, each along worker counts
as before placements counted (linear interpolation between points; outside them an Amdahl curve
`s(n) = n / (1 + a (n - 1))` with `a` fitted to the two nearest points, or `Settings.default_serial_fraction` when
fewer than two exist):

- across placements: every measured worker count stands in with its value at k nodes (linear between the node
  counts measured at that worker count, the nearest beyond them: usually a worker count has one placement, and
  then that is its value);
- this placement's own: only the measurements taken on exactly k nodes, when there are any.

Why both, and why the larger: the first alone lets "7 workers on 4 nodes: 63/s" drag down what 4 workers on one
node promise (45/s expected, 87 real), and a YOLOv3 job that had only run spread never tried packing; the second
alone extrapolates one far-off point (an ImageNet job's "9 workers on 7 nodes" made 22 on 7 look slower than the
21 on 6 it had, and it stopped growing). Taking the larger is optimism where the evidence is thin: a wrong
optimistic estimate is corrected by the very next report, keyed by the placement it was made at (and rule 1 of
`plan` sheds a spread that ran slower), while a pessimistic one is never tested. Measured in the simulator, it beat
either alone (docs/scheduling.md). Without any measurement the unit is "1-worker throughputs" and placement is
ignored, which is all that comparisons within one job need.
"""

from __future__ import annotations

from itertools import pairwise

from elastic_operator.policy.snapshot import Job, Settings


def amdahl(n: float, serial: float) -> float:
    return n / (1.0 + serial * (n - 1.0)) if n > 0 else 0.0


def _fit_serial(n1: int, t1: float, n2: int, t2: float, default: float) -> float:
    """Amdahl's `a` through two measurements (n1 < n2), clamped to [0, 1]."""
    if t1 <= 0 or n1 == n2:
        return default
    r = t2 / t1
    denominator = r * n1 * (n2 - 1) - n2 * (n1 - 1)
    if denominator == 0:
        return default
    return min(1.0, max(0.0, (n2 - r * n1) / denominator))


def _along(points: list[tuple[int, float]], n: int, default: float) -> float:
    """Samples/s at n workers from (workers, samples/s) points sorted by worker count: the value at a point,
    linear between points, Amdahl beyond them."""
    for m, v in points:
        if m == n:
            return v
    lo, hi = points[0], points[-1]
    if lo[0] < n < hi[0]:
        below = max((p for p in points if p[0] < n), key=lambda p: p[0])
        above = min((p for p in points if p[0] > n), key=lambda p: p[0])
        frac = (n - below[0]) / (above[0] - below[0])
        return below[1] + frac * (above[1] - below[1])
    if n < lo[0]:
        anchor = lo
        serial = _fit_serial(*points[0], *points[1], default) if len(points) > 1 else default
    else:
        anchor = hi
        serial = _fit_serial(*points[-2], *points[-1], default) if len(points) > 1 else default
    return anchor[1] * amdahl(n, serial) / amdahl(anchor[0], serial)


def _across(points: list[tuple[int, float]], k: int) -> float:
    """Samples/s at k nodes from measurements at one worker count (sorted by node count): linear in between, the
    nearest beyond."""
    if k <= points[0][0]:
        return points[0][1]
    if k >= points[-1][0]:
        return points[-1][1]
    for (k0, v0), (k1, v1) in pairwise(points):
        if k0 <= k <= k1:
            return v0 + (k - k0) / (k1 - k0) * (v1 - v0)
    raise AssertionError("unreachable: k lies between the ends")  # pragma: no cover


class Curve:
    """Expected samples/s of one job by (workers, nodes spanned) (memoised; build one per job per planning round).

    `per_node`: how many of the job's workers fill one node (`Cluster.per_node`; 0: unknown). A placement that fills
    whole nodes (n = k x per_node on k nodes) and has not been measured is expected to do at least what the job's
    best measured worker does (the highest samples/s per worker on at most k nodes) times the default curve: whole
    nodes are what hardware and collective libraries are built for, and a curve measured at partial nodes can dip
    where a whole node would not (YOLOv3 at batch 64 in the Pollux traces: 54/s on 2 and on 3 GPUs of one node, 87/s
    on 4, because 2 and 3 accumulate gradients and 4 does not). Optimism again: the next report corrects it."""

    def __init__(self, job: Job, settings: Settings, per_node: int = 0):
        self.measured: dict[tuple[int, int], float] = {
            (n, k): v for (n, k), v in sorted(job.throughput.items()) if n > 0 and k > 0 and v > 0
        }
        self.by_count: dict[int, list[tuple[int, float]]] = {}  # workers -> [(nodes, samples/s)] by nodes
        self.by_span: dict[int, list[tuple[int, float]]] = {}  # nodes -> [(workers, samples/s)] by workers
        for (n, k), v in self.measured.items():
            self.by_count.setdefault(n, []).append((k, v))
            self.by_span.setdefault(k, []).append((n, v))
        self.default = settings.default_serial_fraction
        self.per_node = per_node
        self._memo: dict[tuple[int, int], float] = {}

    def at(self, n: int, k: int = 1) -> float:
        """Samples/s with n workers on k nodes (k is clamped to 1..n)."""
        if n <= 0:
            return 0.0
        key = (n, min(max(1, k), n))
        value = self._memo.get(key)
        if value is None:
            value = self._compute(*key)
            self._memo[key] = value
        return value

    def _compute(self, n: int, k: int) -> float:
        measured = self.measured.get((n, k))
        if measured is not None:
            return measured
        if not self.by_count:
            return amdahl(n, self.default)
        across = _along([(m, _across(points, k)) for m, points in self.by_count.items()], n, self.default)
        same = self.by_span.get(k)
        value = max(across, _along(same, n, self.default)) if same else across
        if self.per_node > 0 and n == k * self.per_node:
            value = max(value, self._whole_nodes(n, k))
        return value

    def _whole_nodes(self, n: int, k: int) -> float:
        """n workers filling k whole nodes: the best measured worker (samples/s per worker, on at most k nodes)
        scaled along the default curve."""
        points = [(m, v) for (m, kk), v in self.measured.items() if kk <= k]
        if not points:
            return 0.0
        m, v = max(points, key=lambda p: (p[1] / p[0], -p[0]))
        return v * amdahl(n, self.default) / amdahl(m, self.default)

    def marginal_gain(self, n: int, k: int = 1, k_next: int | None = None) -> float:
        """What the (n+1)-th worker adds, as a fraction of the job's speed at n workers on k nodes, when it lands
        where it leaves the job on `k_next` nodes (default: the same k). Comparable across jobs.

        That fraction is how much sooner the job's remaining work gets done, which is what average completion time
        is made of: a second worker for a 1-worker job halves its remaining time, a 49th for a 48-worker job
        shortens it by 2 % at best. Counted in 1-worker throughputs instead, both looked alike, and wide jobs kept
        growing while just-admitted ones waited (1.34x -> 1.28x of Pollux's average JCT in the simulator). A
        worker that takes the job onto one more node is worth what the job is expected to do there, which is
        negative when spreading costs more than the worker gives."""
        base = self.at(max(1, n), k)
        if base <= 0:
            return 0.0
        return (self.at(n + 1, k if k_next is None else k_next) - self.at(n, k)) / base


def estimate(job: Job, n: int, settings: Settings, nodes: int = 1) -> float:
    """Expected samples/s of `job` with `n` workers on `nodes` nodes (0 for n <= 0)."""
    return Curve(job, settings).at(n, nodes)


def remaining_time(job: Job, settings: Settings, curve: Curve | None = None) -> float | None:
    """Seconds the work `job` reports left would take at its current speed (measured at its placement, else expected
    from its measurements), or None: it reports none, is not running, or has never been measured."""
    if job.remaining_samples is None or job.size <= 0:
        return None
    curve = curve or Curve(job, settings)
    if not curve.measured:
        return None
    rate = curve.at(job.size, max(1, job.spans))
    return max(0.0, job.remaining_samples) / rate if rate > 0 else None


def service_weight(job: Job, settings: Settings, curve: Curve | None = None) -> float:
    """How much a worker's gain for `job` counts against other jobs' (goodput mode).

    Shortest remaining time first, where it is known: a job whose reported remaining work takes R seconds at its
    current speed weighs `Sr / (Sr + R)` (`remaining_scale_s` Sr). With speedups below linear the allocation that
    minimises average completion time gives the larger shares to the jobs with the least work left (heSRPT), and
    finishing them sooner frees their workers for the rest; measured in the simulator it took the average JCT from
    1.20x to 1.15x of Pollux's. Otherwise (no report of remaining work, or no measured speed yet) least attained
    service first, `S / (S + attained_s)` (`service_scale_s` S; Tiresias' idea, continuous instead of discrete
    queues): job lengths are heavy-tailed, so a job that has had little service is likely to be short. Every job
    keeps at least its minimum, so a long job slows down but never stops. Both scales 0: every job weighs the same."""
    if settings.remaining_scale_s > 0:
        left = remaining_time(job, settings, curve)
        if left is not None:
            return settings.remaining_scale_s / (settings.remaining_scale_s + left)
    scale = settings.service_scale_s
    if scale <= 0:
        return 1.0
    return scale / (scale + max(0.0, job.attained_s))


def cooldown(job: Job, settings: Settings) -> float:
    return settings.cooldown_s if job.cooldown_s is None else job.cooldown_s


def expected_pause(job: Job, settings: Settings) -> float:
    """The pause a rescale of `job` is expected to cost: its own latest measurement, else the setting."""
    return settings.rescale_pause_s if job.rescale_pause_s is None else job.rescale_pause_s


def worth_rescaling(
    job: Job,
    n: int,
    m: int,
    settings: Settings,
    curve: Curve | None = None,
    k_n: int | None = None,
    k_m: int | None = None,
) -> tuple[bool, dict[str, float]]:
    """Hysteresis for a grow from n workers on k_n nodes (default: the nodes it spans now) to m on k_m (default:
    k_n) of a running job: over the cooldown horizon H, a rescale costs a pause P of no progress, so it pays off
    only when T(m) (H - P) > T(n) H (1 + margin). H is the job's cooldown,
    but at least `min_payoff_horizon_s`: a job that may rescale at any time (cooldown 0) still grows when it pays.
    A job that reports its remaining work and would finish sooner at its measured speed is judged over that time
    instead: a job about to finish is not paused for a speed-up it would hardly use."""
    horizon = max(cooldown(job, settings), settings.min_payoff_horizon_s)
    pause = expected_pause(job, settings)
    curve = curve or Curve(job, settings)
    k_n = max(1, job.spans) if k_n is None else k_n
    k_m = k_n if k_m is None else k_m
    t_n, t_m = curve.at(n, k_n), curve.at(m, k_m)
    if job.remaining_samples is not None and (n, k_n) in curve.measured and t_n > 0:
        horizon = min(horizon, job.remaining_samples / t_n)
    with_rescale = t_m * max(0.0, horizon - pause)
    without = t_n * horizon * (1.0 + settings.grow_margin)
    facts = {"throughput_now": round(t_n, 3), "throughput_after": round(t_m, 3), "horizon_s": horizon}
    return with_rescale > without, facts
