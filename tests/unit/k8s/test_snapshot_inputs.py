"""What the snapshot reads from a TrainingJob's status for the policy, whatever shape the status has."""

from __future__ import annotations

from typing import Any

import pytest

from elastic_operator.k8s.snapshot import _remaining


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"progress": {"remainingSamples": 4096}}, 4096.0),
        ({"progress": {"remainingSamples": 0}}, 0.0),
        ({"progress": {}}, None),
        ({"progress": {"remainingSamples": -1}}, None),
        ({"progress": {"remainingSamples": True}}, None),
        ({"progress": {"remainingSamples": "many"}}, None),
        ({"progress": "garbage"}, None),
        ("garbage", None),
        (None, None),
    ],
)
def test_remaining_work_is_read_only_when_it_is_a_sane_number(status: Any, expected: float | None) -> None:
    assert _remaining({"metadata": {"name": "j"}, "status": status}) == expected
