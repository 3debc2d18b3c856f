"""Fuzz the sweep controller's round: a bad TuningSweep (spec, status) next to a good one with bad trial jobs.

Property: no sweep's round fails (the per-sweep safety net logs "round failed"; the fuzzing asserts it is never
needed), the good sweep creates its trials, an invalid sweep gets one status write naming the field and nothing
more in later rounds, and every status written passes the CRD model.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from elastic_operator.api.tuningsweep import TuningSweepStatus
from elastic_operator.api.validation import validate_tuningsweep
from elastic_operator.k8s.sweeps import SweepController
from elastic_operator.k8s.view import ClusterView
from tests.unit.fuzz.bad_json import api_object, mutations
from tests.unit.fuzz.test_models_fuzz import FUZZ, SWEEPS, assert_writable
from tests.unit.sweep.test_controller import FakeClient

JSON = dict[str, Any]


def trial(sweep: str, number: int) -> JSON:
    return api_object(
        {
            "metadata": {
                "labels": {"elastic.training/sweep": sweep, "elastic.training/trial": str(number)},
                "annotations": {"elastic.training/trial-params": '{"lr": "0.01", "hidden": "32", "batch_size": "64"}'},
            },
            "spec": SWEEPS[0]["spec"]["trialTemplate"]["spec"],
            "status": {"phase": "Running", "progress": {"epoch": 1, "metrics": {"accuracy": 0.5}}},
        },
        name=f"{sweep}-t{number}",
        uid=f"uid-{sweep}-t{number}",
    )


bad_sweeps = st.one_of(
    mutations({k: v for k, v in SWEEPS[0].items() if k != "status"}),
    st.sampled_from(SWEEPS).map(lambda s: {**s, "status": {"phase": "Running", "trials": []}}).flatmap(mutations),
)


class Errors(logging.Handler):
    """ERROR records of the sweep controller (its per-sweep safety net logs "round failed" with a traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(FUZZ, max_examples=30)  # Optuna runs in every round
@given(bad_sweeps, st.lists(st.sampled_from([0, 1, 2]).map(lambda n: trial("good", n)).flatmap(mutations), max_size=3))
def test_a_bad_sweep_or_trial_never_fails_a_round(raw: Any, trials: list[Any]) -> None:
    errors, logger = Errors(), logging.getLogger("elastic_operator.sweeps")
    logger.addHandler(errors)
    try:
        asyncio.run(_rounds(raw, trials))
    finally:
        logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


async def _rounds(raw: Any, trials: list[Any]) -> None:
    client, view = FakeClient(), ClusterView()
    good = api_object(copy.deepcopy(SWEEPS[0]), name="good", uid="uid-good")
    bad = api_object(raw, name="bad", uid="uid-bad")
    for obj in (good, bad):
        obj["metadata"]["resourceVersion"] = "5"
        client.objects[obj["metadata"]["name"]] = copy.deepcopy(obj)
        view.observe("TuningSweep", None, obj)
    for i, t in enumerate(trials):  # trials of the good sweep, any shape: its decide() reads them all
        view.observe("TrainingJob", None, api_object(t, name=f"good-t{i}", uid=f"uid-good-t{i}"))
    ctl = SweepController(client, view, ["ns"])  # type: ignore[arg-type]

    await ctl.run_round(1_800_000_000.0)
    assert "status" in client.objects["good"], "the good sweep must go on"
    for kind, status in client.calls:
        if kind == "status":
            assert_writable(status, TuningSweepStatus)
    _, issues = validate_tuningsweep(bad)
    bad_writes = [c for c in client.calls if c[0] == "status" and c[1].get("message", "").startswith("invalid spec")]
    if issues:
        assert len(bad_writes) == 1 and issues[0][0] in bad_writes[0][1]["message"], (issues, bad_writes)
    # the watch brings our writes back; the next rounds write nothing more about the invalid sweep
    for name in ("good", "bad"):
        view.observe("TuningSweep", "MODIFIED", copy.deepcopy(client.objects[name]))
    client.calls.clear()
    await ctl.run_round(1_800_000_001.0)
    await ctl.run_round(1_800_000_002.0)
    if issues:
        assert not [c for c in client.calls if c[0] == "status" and "invalid spec" in str(c[1].get("message"))]
