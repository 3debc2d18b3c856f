"""Optuna ask/tell over an in-memory study rebuilt from the sweep's recorded trials.

The operator keeps no Optuna state between rounds: every round rebuilds a study from `status.trials`, asks it for
new parameters and lets its pruner judge new intermediate values. So a restarted operator repeats nothing and
loses nothing, and the same seed with the same history gives the same suggestion:

- The sampler is created afresh for every suggestion with a seed derived from (sweep seed, trial number), so its
  random state depends on nothing but those two and the recorded trials.
- random and TPE read only the trials' params and values: the study is rebuilt with `add_trial`. Trials still
  pending or running are added as RUNNING (TPE's constant liar then steers parallel suggestions apart).
- CMA-ES keeps its optimizer in trial system attributes that status does not hold, so its study is rebuilt by a
  canonical replay: trials are asked again in number order with their recorded parameters, each finished one told
  at once, which feeds the optimizer the same solutions in the same order every time.
- grid enumerates the combinations in order (`space.grid_point`): trial n is combination n.
- Pruners (median, successive halving) see every trial's intermediate values on a fixed grid of resource points
  (`points`), and ASHA's per-rung bookkeeping (`completed_rung_k`) is rebuilt from the values recorded at the rungs.

Pure: no clock, no I/O. Optuna's logging is lowered to warnings.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import optuna
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.samplers import BaseSampler, CmaEsSampler, RandomSampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, Trial, TrialState, create_trial

from elastic_operator.api.tuningsweep import AshaStopping, TrialRecord, TuningSweepSpec
from elastic_operator.sweep import space
from elastic_operator.sweep.space import Params

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX_POINTS = 60
"""Median stopping records at most this many points per trial (the API allows 64 intermediate values)."""


def derive_seed(seed: int, number: int, purpose: str = "sample") -> int:
    """A 31-bit seed that depends only on (seed, number, purpose)."""
    digest = hashlib.sha256(f"{seed}:{number}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def default_seed(uid: str) -> int:
    """The seed of a sweep that sets none: fixed for the sweep's lifetime (from its uid), so replays agree."""
    return derive_seed(0, 0, uid or "sweep")


def direction(spec: TuningSweepSpec) -> Literal["minimize", "maximize"]:
    return spec.objective.direction


def better(spec: TuningSweepSpec, a: float, b: float) -> bool:
    """Is `a` strictly better than `b`?"""
    return a > b if spec.objective.direction == "maximize" else a < b


# --- resource points of the pruner --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Points:
    """Where intermediate values are recorded and judged: resource points (epochs or steps) of the pruner.

    ASHA: its rungs, minResource x reductionFactor^(minEarlyStoppingRate + k), below maxResource. Median:
    warmup + k x interval (k >= 0, resource 0 excluded), the interval doubled as often as needed to keep at most
    MAX_POINTS points up to the largest resource seen. Policy none: the same as median with defaults, so the
    records still show a learning curve."""

    kind: str  # "asha" | "median" | "none"
    start: int
    factor: int  # asha: reduction factor; median: the (effective) interval
    limit: int | None  # asha: max resource (exclusive), when known

    def upto(self, resource: int) -> list[int]:
        """All points <= resource, ascending."""
        out: list[int] = []
        if self.kind == "asha":
            r = self.start
            while r <= resource and (self.limit is None or r < self.limit):
                out.append(r)
                r *= self.factor
            return out
        r = self.start
        while r <= resource:
            if r > 0:
                out.append(r)
            r += self.factor
        return out

    def contains(self, resource: int) -> bool:
        if self.kind == "asha":
            return resource in self.upto(resource)
        return resource > 0 and resource >= self.start and (resource - self.start) % self.factor == 0


def points(spec: TuningSweepSpec, max_seen: int, learned_max: int | None) -> Points:
    es = spec.early_stopping
    if es.policy == "asha":
        a = es.asha or AshaStopping()
        start = a.min_resource * a.reduction_factor**a.min_early_stopping_rate
        limit = a.max_resource if a.max_resource is not None else learned_max
        return Points("asha", start, a.reduction_factor, limit)
    m = es.median
    warmup, interval = (m.warmup, m.interval) if m is not None else (0, 1)
    while (max(0, max_seen - warmup)) // interval + 1 > MAX_POINTS:
        interval *= 2
    return Points(es.policy, warmup, interval, None)


def intermediate_of(record: TrialRecord) -> dict[int, float]:
    return {int(k): float(v) for k, v in record.intermediate.items()}


# --- samplers and pruners ----------------------------------------------------------------------------------------


def make_sampler(spec: TuningSweepSpec, seed: int) -> BaseSampler:
    algo = spec.algorithm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if algo.name == "tpe":
            return TPESampler(
                seed=seed,
                n_startup_trials=algo.startup_trials,
                multivariate=True,
                constant_liar=True,
                warn_independent_sampling=False,
            )
        if algo.name == "cmaes":
            return CmaEsSampler(
                seed=seed,
                n_startup_trials=algo.startup_trials,
                independent_sampler=RandomSampler(seed=seed),
                warn_independent_sampling=False,
            )
        return RandomSampler(seed=seed)


def make_pruner(spec: TuningSweepSpec, interval: int | None = None) -> BasePruner:
    """The spec's early-stopping policy as an Optuna pruner (`interval`: median's effective interval)."""
    es = spec.early_stopping
    if es.policy == "asha":
        a = es.asha or AshaStopping()
        return SuccessiveHalvingPruner(
            min_resource=a.min_resource,
            reduction_factor=a.reduction_factor,
            min_early_stopping_rate=a.min_early_stopping_rate,
        )
    if es.policy == "median":
        m = es.median
        startup, warmup, every = (m.startup_trials, m.warmup, m.interval) if m is not None else (5, 0, 1)
        return MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup, interval_steps=interval or every)
    return NopPruner()


def _new_study(spec: TuningSweepSpec, sampler: BaseSampler, pruner: BasePruner) -> optuna.Study:
    return optuna.create_study(
        storage=InMemoryStorage(), sampler=sampler, pruner=pruner, direction=direction(spec), load_if_exists=False
    )


_STATES = {
    "Pending": TrialState.RUNNING,
    "Running": TrialState.RUNNING,
    "Succeeded": TrialState.COMPLETE,
    "Pruned": TrialState.PRUNED,
    "Failed": TrialState.FAIL,
}


def _frozen(
    record: TrialRecord,
    params: Params | None,
    dists: Mapping[str, BaseDistribution],
    rungs: Mapping[str, float] | None = None,
) -> FrozenTrial:
    """A recorded trial as an Optuna trial. Records whose params no longer fit the space become FAIL trials
    without params (they keep the numbering and are ignored by every sampler)."""
    state = _STATES[record.state]
    inter = intermediate_of(record)
    value = record.value
    if params is None or (state == TrialState.COMPLETE and value is None):
        return create_trial(state=TrialState.FAIL, intermediate_values=inter, system_attrs=dict(rungs or {}))
    if state == TrialState.PRUNED and value is None and inter:
        value = inter[max(inter)]
    return create_trial(
        state=state,
        value=value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
        params=dict(params),
        distributions=dict(dists),
        intermediate_values=inter,
        system_attrs=dict(rungs or {}),
    )


def _sorted(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Records by number, with FAIL placeholders for any gap, so Optuna's trial numbers equal ours."""
    by_number = {r.number: r for r in records}
    top = max(by_number, default=-1)
    return [by_number.get(n) or TrialRecord(number=n, params={}, state="Failed") for n in range(top + 1)]


# --- suggestions ---------------------------------------------------------------------------------------------------


def suggest(spec: TuningSweepSpec, records: Sequence[TrialRecord], seed: int, count: int) -> list[Params]:
    """Parameters of the next `count` trials (numbers len(records), len(records)+1, ...), each asked while the
    previous ones run. Deterministic in (spec, records, seed)."""
    if count <= 0:
        return []
    ordered = _sorted(records)
    first = len(ordered)
    if spec.algorithm.name == "grid":
        return [space.grid_point(spec, first + i) for i in range(count)]
    dists = space.distributions(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.algorithm.name == "cmaes":
            study = _replay(spec, ordered, dists, seed)
        else:
            study = _new_study(spec, RandomSampler(seed=0), NopPruner())
            for record in ordered:
                study.add_trial(_frozen(record, space.parse(spec, record.params), dists))
        out: list[Params] = []
        for i in range(count):
            study.sampler = make_sampler(spec, derive_seed(seed, first + i))
            trial = study.ask(fixed_distributions=dists)
            out.append(space.normalise(spec, trial.params))
    return out


def _replay(
    spec: TuningSweepSpec, ordered: Sequence[TrialRecord], dists: Mapping[str, BaseDistribution], seed: int
) -> optuna.Study:
    """CMA-ES: ask every recorded trial again, in order, with its recorded params, so the sampler updates its
    optimizer (kept in system attributes) exactly as if the trials had run one after another; tell finished
    trials at once."""
    sampler = make_sampler(spec, derive_seed(seed, 0, "replay"))
    study = _new_study(spec, sampler, NopPruner())
    for record in ordered:
        params = space.parse(spec, record.params)
        if params is None:
            study.add_trial(_frozen(record, None, dists))
            continue
        study.enqueue_trial(dict(params))
        trial = study.ask(fixed_distributions=dict(dists))
        frozen = study._storage.get_trial(trial._trial_id)
        # fixed params bypass the sampler: run its relative step by hand so its optimizer sees this trial
        sampler.sample_relative(study, frozen, sampler.infer_relative_search_space(study, frozen))
        for step, value in sorted(intermediate_of(record).items()):
            trial.report(value, step)
        if record.state == "Succeeded" and record.value is not None:
            study.tell(trial, record.value)
        elif record.state == "Pruned":
            study.tell(trial, state=TrialState.PRUNED)
        elif record.state in ("Failed", "Succeeded"):
            study.tell(trial, state=TrialState.FAIL)
    return study


# --- pruning -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneCheck:
    """A running trial that reached new resource points this round: judge it at each, in order."""

    number: int
    new_points: tuple[tuple[int, float], ...]  # (resource point, value), ascending


def prune(
    spec: TuningSweepSpec, records: Sequence[TrialRecord], checks: Sequence[PruneCheck], pts: Points
) -> dict[int, int]:
    """Which of `checks` the pruner stops: trial number -> the resource point at which it was pruned.

    `records` hold every trial's values before this round. Trials are judged in number order, each new point in
    turn, on one study, so a trial judged earlier in the round is a competitor of later ones (as asynchronous
    successive halving is). A trial is judged at a point exactly once: in the round the point is first recorded."""
    if spec.early_stopping.policy == "none" or not checks:
        return {}
    dists = space.distributions(spec)
    pruner = make_pruner(spec, pts.factor if pts.kind == "median" else None)
    asha = pts.kind == "asha"
    ids: dict[int, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = _new_study(spec, RandomSampler(seed=0), pruner)
        for record in _sorted(records):
            rungs = _rungs(record, pts) if asha else {}
            params = space.parse(spec, record.params)
            study.add_trial(_frozen(record, params, dists, rungs))
            ids[record.number] = study._storage.get_all_trials(study._study_id, deepcopy=False)[-1]._trial_id
        pruned: dict[int, int] = {}
        for check in sorted(checks, key=lambda c: c.number):
            trial_id = ids.get(check.number)
            if trial_id is None:
                continue
            if study._storage.get_trial(trial_id).state != TrialState.RUNNING:
                continue  # its params no longer fit the space: it is not judged
            trial = Trial(study, trial_id)
            for point, value in check.new_points:
                trial.report(value, point)
                if trial.should_prune():
                    pruned[check.number] = point
                    break
    return pruned


def _rungs(record: TrialRecord, pts: Points) -> dict[str, float]:
    """ASHA's bookkeeping for one trial, rebuilt from its values recorded at the rungs."""
    inter = intermediate_of(record)
    out: dict[str, float] = {}
    rung = 0
    r = pts.start
    while r in inter and not math.isnan(inter[r]):
        out[f"completed_rung_{rung}"] = inter[r]
        rung += 1
        r *= pts.factor
    return out
