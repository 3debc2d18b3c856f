"""The search space of a sweep, in Optuna's terms, and the text form of parameter values in status.

Pure functions. Parameter values live in status as the text substituted into the template (`format_value`); `parse`
turns that text back into the typed value, so a trial can be rendered again (or fed to a sampler) from status alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from elastic_operator.api.placeholders import ParamValue, format_value
from elastic_operator.api.tuningsweep import Parameter, TuningSweepSpec

Params = dict[str, ParamValue]
MAX_GRID = 10**6
"""Grids larger than this are not enumerated (maxTrials is at most 1000 anyway)."""


def distribution(p: Parameter) -> BaseDistribution:
    """One parameter as an Optuna distribution."""
    if p.type == "categorical":
        assert p.values is not None
        return CategoricalDistribution(list(p.values))
    assert p.low is not None and p.high is not None
    if p.type == "int":
        step = 1 if p.step is None or p.log else int(p.step)
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=step)
    return FloatDistribution(float(p.low), float(p.high), log=p.log, step=None if p.log else p.step)


def distributions(spec: TuningSweepSpec) -> dict[str, BaseDistribution]:
    """The whole space, in declaration order."""
    return {p.name: distribution(p) for p in spec.parameters}


def _axis(p: Parameter) -> list[ParamValue]:
    """Every value of one parameter on the grid, in ascending order (categorical: as declared)."""
    if p.type == "categorical":
        assert p.values is not None
        return list(p.values)
    assert p.low is not None and p.high is not None
    if p.type == "int":
        return list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
    assert p.step is not None  # the API requires a step on float parameters for the grid algorithm
    # decimal arithmetic: 0.1 + 0.1 + 0.1 is not 0.3, but Decimal("0.1") * 3 is
    low, delta, high = Decimal(repr(p.low)), Decimal(repr(p.step)), Decimal(repr(p.high))
    points = int((high - low) / delta) + 1
    return [float(low + delta * i) for i in range(points)]


def grid_search_space(spec: TuningSweepSpec) -> dict[str, list[ParamValue]]:
    """The grid as Optuna's GridSampler takes it: parameter -> its values."""
    return {p.name: _axis(p) for p in spec.parameters}


def grid_size(spec: TuningSweepSpec) -> int:
    return math.prod(len(v) for v in grid_search_space(spec).values())


def grid_point(spec: TuningSweepSpec, number: int) -> Params:
    """Trial `number` of the grid algorithm: the number-th combination in order (the last parameter varies
    fastest), so trials enumerate the grid exactly once whatever happened before."""
    space = grid_search_space(spec)
    out: Params = {}
    rest = number
    for name, values in reversed(space.items()):
        rest, index = divmod(rest, len(values))
        out[name] = values[index]
    if rest:
        raise IndexError(f"grid has {grid_size(spec)} points; trial {number} is beyond it")
    return {name: out[name] for name in space}


def iter_grid(spec: TuningSweepSpec) -> Iterator[Params]:
    space = grid_search_space(spec)
    for combo in itertools.product(*space.values()):
        yield dict(zip(space, combo, strict=True))


def to_text(params: Mapping[str, ParamValue]) -> dict[str, str]:
    """Typed values -> the text recorded in status (and substituted into the template)."""
    return {k: format_value(v) for k, v in params.items()}


def parse_value(p: Parameter, text: str) -> ParamValue | None:
    """The typed value of one recorded parameter, or None when the text does not fit the parameter (the spec was
    edited since the trial was recorded)."""
    try:
        if p.type == "categorical":
            assert p.values is not None
            return next((v for v in p.values if format_value(v) == text), None)
        number: float = int(text) if p.type == "int" else float(text)
    except ValueError:
        return None
    assert p.low is not None and p.high is not None
    return number if math.isfinite(number) and p.low <= number <= p.high else None


def parse(spec: TuningSweepSpec, params: Mapping[str, str]) -> Params | None:
    """Recorded text -> typed values for every declared parameter, or None when any is missing or does not fit."""
    out: Params = {}
    for p in spec.parameters:
        text = params.get(p.name)
        value = None if text is None else parse_value(p, text)
        if value is None:
            return None
        out[p.name] = value
    return out


def normalise(spec: TuningSweepSpec, raw: Mapping[str, object]) -> Params:
    """Values from a sampler (numpy scalars, ints for floats) -> plain Python values of the declared types."""
    out: Params = {}
    for p in spec.parameters:
        v = raw[p.name]
        if p.type == "int":
            out[p.name] = int(v)  # type: ignore[call-overload]
        elif p.type == "float":
            out[p.name] = float(v)  # type: ignore[arg-type]
        else:
            assert isinstance(v, str | int)
            out[p.name] = v
    return out


def names(spec: TuningSweepSpec) -> Sequence[str]:
    return [p.name for p in spec.parameters]
