"""Expected throughput of a job at a worker count, from its reports or a concave default.

Measured points (samples/s by worker count) are used as they are and interpolated linearly between; outside them the
curve follows Amdahl's law, `s(n) = n / (1 + a (n - 1))`, with `a` fitted to the two nearest measurements (or
`Settings.default_serial_fraction` when fewer than two exist). Without any measurement the unit is "1-worker
throughputs", which is all that comparisons within one job need.
"""

from __future__ import annotations

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


class Curve:
    """Expected samples/s of one job by worker count (memoised; build one per job per planning round)."""

    def __init__(self, job: Job, settings: Settings):
        self.points = sorted((k, v) for k, v in job.throughput.items() if k > 0 and v > 0)
        self.measured = dict(self.points)
        self.default = settings.default_serial_fraction
        self._memo: dict[int, float] = {}

    def at(self, n: int) -> float:
        if n <= 0:
            return 0.0
        value = self._memo.get(n)
        if value is None:
            value = self._compute(n)
            self._memo[n] = value
        return value

    def _compute(self, n: int) -> float:
        points, default = self.points, self.default
        if not points:
            return amdahl(n, default)
        if n in self.measured:
            return self.measured[n]
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

    def marginal_gain(self, n: int) -> float:
        """What the (n+1)-th worker adds, as a fraction of the job's speed at n workers (comparable across jobs).

        That fraction is how much sooner the job's remaining work gets done, which is what average completion time
        is made of: a second worker for a 1-worker job halves its remaining time, a 49th for a 48-worker job
        shortens it by 2 % at best. Counted in 1-worker throughputs instead, both looked alike, and wide jobs kept
        growing while just-admitted ones waited (1.34x -> 1.28x of Pollux's average JCT in the simulator)."""
        base = self.at(max(1, n))
        if base <= 0:
            return 0.0
        return (self.at(n + 1) - self.at(n)) / base


def estimate(job: Job, n: int, settings: Settings) -> float:
    """Expected samples/s of `job` with `n` workers (0 for n <= 0)."""
    return Curve(job, settings).at(n)


def service_weight(job: Job, settings: Settings) -> float:
    """How much a worker's gain for `job` counts against other jobs' (goodput mode): `S / (S + attained_s)`.

    Least attained service first (Tiresias' idea, continuous instead of discrete queues): job lengths are
    heavy-tailed, so a job that has had little service is likely to be short and finish soon with a bit more, and
    average completion time falls when short jobs are not held back by long ones. Every job keeps at least its
    minimum, so a long job slows down but never stops. `S = 0` weighs every job the same."""
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
    job: Job, n: int, m: int, settings: Settings, curve: Curve | None = None
) -> tuple[bool, dict[str, float]]:
    """Hysteresis for a grow from n to m workers of a running job: over the cooldown horizon H, a rescale costs a
    pause P of no progress, so it pays off only when T(m) (H - P) > T(n) H (1 + margin). H is the job's cooldown,
    but at least `min_payoff_horizon_s`: a job that may rescale at any time (cooldown 0) still grows when it pays.
    A job that reports its remaining work and would finish sooner at its measured speed is judged over that time
    instead: a job about to finish is not paused for a speed-up it would hardly use."""
    horizon = max(cooldown(job, settings), settings.min_payoff_horizon_s)
    pause = expected_pause(job, settings)
    curve = curve or Curve(job, settings)
    t_n, t_m = curve.at(n), curve.at(m)
    if job.remaining_samples is not None and n in curve.measured and t_n > 0:
        horizon = min(horizon, job.remaining_samples / t_n)
    with_rescale = t_m * max(0.0, horizon - pause)
    without = t_n * horizon * (1.0 + settings.grow_margin)
    facts = {"throughput_now": round(t_n, 3), "throughput_after": round(t_m, 3), "horizon_s": horizon}
    return with_rescale > without, facts
