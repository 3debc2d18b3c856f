"""The sweep benchmark trains trials in-process (bench/sweep/driver.Curves): its curves must be those of the digits
example run as a real process with the trial's args, or the benchmark would measure another objective."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.sweep.driver import Curves
from elastic_trainer.examples import digits

pytestmark = pytest.mark.trainer


@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_curves_match_the_example_run_as_a_process(dataset: str) -> None:
    argv = ["--dataset", dataset, "--lr", "0.05", "--hidden", "40", "--batch-size", "32", "--epochs", "2"]
    out = subprocess.run(
        [sys.executable, "-m", "elastic_trainer.examples.digits", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    epochs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [e["epoch"] for e in epochs] == [1, 2]
    curves = Curves()
    args = digits.parse_args(argv)
    for e in epochs:
        ours = curves.metrics(args, e["epoch"])
        for name in ("loss", "val_loss", "val_accuracy", "best_val_accuracy", "best_val_loss", "accuracy"):
            assert ours[name] == pytest.approx(e[name], rel=1e-4, abs=1e-6), (e["epoch"], name)
