"""Search space -> Optuna distributions, the grid, and the text form of values in status."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from elastic_operator.api.placeholders import format_value
from elastic_operator.api.tuningsweep import Parameter, TuningSweep
from elastic_operator.sweep import space
from tests.unit.sweep.world import sweep_json


def spec_of(params: list[dict[str, object]], algorithm: str = "tpe"):  # type: ignore[no-untyped-def]
    return TuningSweep.model_validate(sweep_json(params=params, algorithm=algorithm)).spec


def test_distributions_cover_log_step_and_categorical() -> None:
    spec = spec_of(
        [
            {"name": "lr", "type": "float", "low": 1e-4, "high": 0.5, "log": True},
            {"name": "drop", "type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
            {"name": "hidden", "type": "int", "low": 16, "high": 256, "log": True},
            {"name": "layers", "type": "int", "low": 1, "high": 9, "step": 2},
            {"name": "opt", "type": "categorical", "values": ["sgd", "adam", 3]},
        ]
    )
    d = space.distributions(spec)
    assert d["lr"] == FloatDistribution(1e-4, 0.5, log=True)
    assert d["drop"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert d["hidden"] == IntDistribution(16, 256, log=True)
    assert d["layers"] == IntDistribution(1, 9, step=2)
    assert d["opt"] == CategoricalDistribution(["sgd", "adam", 3])
    assert list(d) == ["lr", "drop", "hidden", "layers", "opt"]


def test_grid_enumerates_every_combination_in_order_without_float_drift() -> None:
    spec = spec_of(
        [
            {"name": "a", "type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
            {"name": "b", "type": "int", "low": 1, "high": 5, "step": 2},
            {"name": "c", "type": "categorical", "values": ["x", "y"]},
        ],
        algorithm="grid",
    )
    grid = space.grid_search_space(spec)
    assert grid == {"a": [0.1, 0.2, 0.3], "b": [1, 3, 5], "c": ["x", "y"]}
    assert space.grid_size(spec) == 18
    points = [space.grid_point(spec, i) for i in range(18)]
    assert points == list(space.iter_grid(spec))
    assert points[0] == {"a": 0.1, "b": 1, "c": "x"} and points[1] == {"a": 0.1, "b": 1, "c": "y"}
    assert len({tuple(p.values()) for p in points}) == 18
    with pytest.raises(IndexError):
        space.grid_point(spec, 18)


def test_parse_rejects_values_that_no_longer_fit() -> None:
    spec = spec_of(
        [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}, {"name": "n", "type": "int", "low": 1, "high": 3}]
    )
    assert space.parse(spec, {"x": "0.5", "n": "2"}) == {"x": 0.5, "n": 2}
    assert space.parse(spec, {"x": "1.5", "n": "2"}) is None  # out of range
    assert space.parse(spec, {"x": "0.5"}) is None  # missing
    assert space.parse(spec, {"x": "nan", "n": "2"}) is None
    assert space.parse(spec, {"x": "0.5", "n": "two"}) is None


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False), st.integers(-1000, 1000))
def test_text_round_trip_is_exact(x: float, n: int) -> None:
    p_float = Parameter(name="x", type="float", low=0.0, high=1e10)
    p_int = Parameter(name="n", type="int", low=-1000, high=1000)
    assert space.parse_value(p_float, format_value(x)) == x
    assert space.parse_value(p_int, format_value(n)) == n


@given(st.sampled_from([3, "a", "0.5", "b-c"]))
def test_categorical_values_round_trip(v: int | str) -> None:
    p = Parameter(name="c", type="categorical", values=[3, "a", "0.5", "b-c"])
    assert space.parse_value(p, format_value(v)) == v


def test_normalise_gives_plain_python_types() -> None:
    import numpy as np

    spec = spec_of(
        [{"name": "x", "type": "float", "low": 0.0, "high": 1.0}, {"name": "n", "type": "int", "low": 1, "high": 3}]
    )
    out = space.normalise(spec, {"x": np.float64(0.25), "n": np.int64(2)})
    assert type(out["x"]) is float and type(out["n"]) is int
    assert math.isclose(out["x"], 0.25)
