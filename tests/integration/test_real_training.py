"""The demo's story, reduced (no sweep), with real torch: a real training job grows into GPUs another job frees,
shrinks (checkpoint first) for a higher-priority job, and every job trains to the end; each rescale's training
pause is measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack import story

pytestmark = [pytest.mark.cluster, pytest.mark.trainer]


def test_real_workers_grow_then_shrink_for_priority_and_every_job_trains_to_the_end(tmp_path: Path) -> None:
    summary = story.run(tmp_path)
    final = summary["final"]
    assert {name: s["phase"] for name, s in final.items()} == {
        "warmup": "Succeeded",
        "base": "Succeeded",
        "urgent": "Succeeded",
    }, final
    base = final["base"]
    assert base["rescales"]["grow"] >= 1 and base["rescales"]["shrink"] >= 1, base
    assert base["restarts"]["workerFailed"] == 0, base
    assert base["progress"]["metrics"]["accuracy"] >= 0.95, base["progress"]
    assert final["urgent"]["progress"]["metrics"]["accuracy"] >= 0.95, final["urgent"]["progress"]
    assert base["lastRescalePauseSeconds"] > 0, base
    measured = [seconds for name, seconds in story.pauses(summary) if name == "base"]
    assert len(measured) >= 2 and all(0 < s < 120 for s in measured), summary["events"]
    reasons = [(name, reason) for _, name, reason, _ in summary["events"]]
    for expected in [("base", "Admitted"), ("base", "Growing"), ("base", "Shrinking"), ("urgent", "Admitted")]:
        assert expected in reasons, reasons
    assert reasons.index(("base", "Growing")) < reasons.index(("base", "Shrinking")), reasons
