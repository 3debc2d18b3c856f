"""The demo's story, reduced, with real torch: the operator shrinks a real training job (checkpoint first) for a
higher-priority one; both finish; the shrunk one reaches the digits accuracy target."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack import story

pytestmark = [pytest.mark.cluster, pytest.mark.trainer]


def test_real_workers_shrink_for_priority_and_both_jobs_train_to_the_end(tmp_path: Path) -> None:
    summary = story.run(tmp_path)
    base, urgent = summary["final"]["base"], summary["final"]["urgent"]
    assert urgent["phase"] == "Succeeded", urgent
    assert base["phase"] == "Succeeded", base
    assert base["rescales"]["shrink"] >= 1, base
    assert base["restarts"]["workerFailed"] == 0, base
    assert base["progress"]["metrics"]["accuracy"] >= 0.95, base["progress"]
    reasons = {(name, reason) for name, reason, _ in summary["events"]}
    assert {("base", "Admitted"), ("base", "Shrinking"), ("urgent", "Admitted"), ("base", "Completed")} <= reasons
