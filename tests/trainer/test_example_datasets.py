"""The digits example's datasets: the splits the sweeps select on (fixed test split, validation held out by the seed,
stratified), the models, and that generating MNIST-1D leaves the process's random state alone."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from elastic_trainer.examples import digits

pytestmark = pytest.mark.trainer


def _rows(x: object) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}  # type: ignore[attr-defined]


def test_mnist1d_splits_are_3000_1000_1000_with_a_stratified_validation_split_chosen_by_the_seed() -> None:
    xtr, ytr, xva, yva, xte, yte = digits.load_data(0, "mnist1d")
    assert (tuple(xtr.shape), tuple(xva.shape), tuple(xte.shape)) == ((3000, 40), (1000, 40), (1000, 40))
    assert (len(ytr), len(yva), len(yte)) == (3000, 1000, 1000)
    both = Counter(ytr.tolist()) + Counter(yva.tolist())
    held = Counter(yva.tolist())
    assert sorted(both) == list(range(10)) and all(abs(held[c] - both[c] / 4) <= 1 for c in both)  # stratified
    assert not _rows(xva) & _rows(xtr) and not _rows(xte) & (_rows(xtr) | _rows(xva))
    other = digits.load_data(1, "mnist1d")
    assert _rows(other[4]) == _rows(xte)  # the published test split, whatever the seed
    assert _rows(other[2]) != _rows(xva)  # another seed holds out other training signals
    assert _rows(other[0]) | _rows(other[2]) == _rows(xtr) | _rows(xva)


def test_digits_keeps_its_60_20_20_split() -> None:
    xtr, _, xva, _, xte, _ = digits.load_data(0, "digits")
    assert (xtr.shape[1], len(xtr), len(xva), len(xte)) == (64, 1077, 360, 360)


def test_generating_mnist1d_restores_the_global_random_state() -> None:
    np.random.seed(123)
    random.seed(5)
    digits._mnist1d()
    after = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(5)
    assert after == (np.random.random(), random.random())


def test_each_dataset_has_its_model_and_an_unknown_one_is_named() -> None:
    import torch

    out = digits.build_model(24, "mnist1d")(torch.zeros(5, 40))
    assert tuple(out.shape) == (5, 10)
    assert sum(isinstance(m, torch.nn.Linear) for m in digits.build_model(24, "mnist1d")) == 3
    assert sum(isinstance(m, torch.nn.Linear) for m in digits.build_model(24, "digits")) == 2
    with pytest.raises(ValueError, match="dataset: 'cifar'"):
        digits.load_data(0, "cifar")
    with pytest.raises(SystemExit):  # argparse names --dataset and the choices
        digits.parse_args(["--dataset", "cifar"])


def test_best_val_loss_is_the_lowest_of_any_epoch_and_an_older_checkpoint_without_it_starts_from_this_epoch() -> None:
    import torch

    data = digits.load_data(0, "digits")
    torch.manual_seed(0)
    model = digits.build_model(8)
    first, best = digits.epoch_metrics(model, data, None)
    assert first["best_val_loss"] == first["val_loss"] and best["min_val_loss"] == first["val_loss"]
    kept = best["model"]
    lower, best = digits.epoch_metrics(model, data, {**best, "min_val_loss": 0.01})
    assert lower["best_val_loss"] == 0.01 and lower["val_loss"] > 0.01
    assert best["model"] is kept  # the kept model follows validation accuracy, not the loss
    old = {k: v for k, v in best.items() if k != "min_val_loss"}  # a checkpoint written before best_val_loss
    again, _ = digits.epoch_metrics(model, data, old)
    assert again["best_val_loss"] == again["val_loss"]
