"""`${params.NAME}` placeholders: rendering, and every bad placeholder rejected with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from elastic_operator.api import TuningSweep
from elastic_operator.api.placeholders import (
    PlaceholderError,
    find_placeholders,
    format_value,
    leftover_placeholder_errors,
    placeholder_errors,
    render,
)
from elastic_operator.api.tuningsweep import trial_manifest, trial_name

REPO = Path(__file__).resolve().parents[3]


def sweep() -> TuningSweep:
    return TuningSweep.model_validate(yaml.safe_load((REPO / "examples" / "sweep-digits.yaml").read_text()))


def test_render_substitutes_inside_strings() -> None:
    template: dict[str, Any] = {"args": ["--lr", "${params.lr}", "--x=${params.h}/${params.h}"], "n": 3, "flag": True}
    out = render(template, {"lr": 0.001, "h": 64})
    assert out == {"args": ["--lr", "0.001", "--x=64/64"], "n": 3, "flag": True}
    assert template["args"][1] == "${params.lr}"  # pure: the input is untouched


def test_format_value_is_exact_and_readable() -> None:
    assert format_value(1e-05) == "1e-05" and float(format_value(1e-05)) == 1e-05
    assert format_value(0.1 + 0.2) == "0.30000000000000004"
    assert format_value(True) == "true" and format_value(7) == "7" and format_value("adam") == "adam"
    with pytest.raises(ValueError):
        format_value(float("nan"))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips(x: float) -> None:
    assert float(render("${params.x}", {"x": x})) == x


def test_unknown_placeholder_names_the_field() -> None:
    template = {"spec": {"template": {"args": ["--lr", "${params.learning_rate}"]}}}
    with pytest.raises(PlaceholderError) as err:
        render(template, {"lr": 0.1})
    assert err.value.issues[0][0] == "spec.template.args[1]"
    assert "learning_rate" in err.value.issues[0][1] and "lr" in err.value.issues[0][1]
    assert "spec.template.args[1]" in str(err.value)


def test_prefix_is_prepended() -> None:
    errors = placeholder_errors({"env": [{"name": "A", "value": "${params.nope}"}]}, ["lr"], "spec.trialTemplate.spec")
    assert errors[0][0] == "spec.trialTemplate.spec.env[0].value"


@pytest.mark.parametrize(
    "text",
    ["${params.lr", "${params.}", "${params.1x}", "${params.a-b}", "${params. lr}"],
)
def test_malformed_placeholders_rejected(text: str) -> None:
    errors = placeholder_errors({"args": [text]}, ["lr", "a"])
    assert errors and errors[0][0] == "args[0]" and "malformed" in errors[0][1]


def test_placeholder_in_a_key_rejected() -> None:
    errors = placeholder_errors({"labels": {"${params.lr}": "x"}}, ["lr"])
    assert errors == [("labels.${params.lr}", "placeholders are substituted in values only, not in keys")]


def test_find_and_leftover() -> None:
    obj = {"a": ["${params.x} ${params.y}"], "b": {"c": "${params.x}"}}
    assert find_placeholders(obj) == [("a[0]", "x"), ("a[0]", "y"), ("b.c", "x")]
    assert [p for p, _ in leftover_placeholder_errors(obj, "spec")] == ["spec.a[0]", "spec.b.c"]
    assert placeholder_errors(obj, ["x", "y"]) == []


def test_unused_parameters_are_fine() -> None:
    assert render(["a"], {"unused": 1}) == ["a"]


def test_render_trial_of_the_digits_sweep() -> None:
    s = sweep()
    spec = s.spec.render_trial({"lr": 0.01, "hidden": 64, "batch_size": 32})
    assert spec.template.args[:6] == ["--lr", "0.01", "--hidden", "64", "--batch-size", "32"]
    assert spec.template.command == ["python", "-m", "elastic_trainer.examples.digits"]


def test_render_trial_with_a_missing_parameter_names_the_field() -> None:
    with pytest.raises(PlaceholderError) as err:
        sweep().spec.render_trial({"lr": 0.01, "hidden": 64})
    assert err.value.issues == [
        (
            "spec.trialTemplate.spec.template.args[5]",
            "placeholder ${params.batch_size} names no declared parameter (declared: hidden, lr)",
        )
    ]


def test_sweep_model_rejects_undeclared_placeholder_anywhere() -> None:
    doc = yaml.safe_load((REPO / "examples" / "sweep-digits.yaml").read_text())
    doc["spec"]["trialTemplate"]["spec"]["template"]["workingDir"] = "/runs/${params.momentum}"
    with pytest.raises(ValidationError) as err:
        TuningSweep.model_validate(doc)
    e = err.value.errors()[0]
    assert e["ctx"]["field"] == ".trialTemplate.spec.template.workingDir"
    assert "momentum" in e["msg"]


def test_trial_manifest() -> None:
    s = sweep()
    s.metadata.uid = "u-1"
    s.metadata.namespace = "ns"
    m = trial_manifest(s, 4, {"lr": 0.1, "hidden": 16, "batch_size": 64})
    assert m["metadata"]["name"] == trial_name("sweep-digits", 4) == "sweep-digits-t4"
    assert m["metadata"]["labels"] == {
        "app": "digits",
        "elastic.training/sweep": "sweep-digits",
        "elastic.training/trial": "4",
    }
    assert m["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert m["kind"] == "TrainingJob" and "${params." not in str(m)
