"""What `status.progress` may say about checkpoints, given the reports at hand and what the status said before.

Reports live in the operator's memory. After an operator restart, or while a fresh pod (a grow, a replacement)
reports step 0 before it trains, the reports at hand know less than the status already shows. Checkpoints are
durable, so `lastCheckpointStep` never goes back; training resumes from the last checkpoint, so `step` is never
shown below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from elastic_operator.reports.server import StoredReport


def durable_checkpoint(reports: Iterable[StoredReport], previous_progress: Any) -> int | None:
    """The latest checkpoint step any report or the previous `status.progress` names; None if none does."""
    steps = [s.report.last_checkpoint_step for s in reports if s.report.last_checkpoint_step is not None]
    before = previous_progress.get("lastCheckpointStep") if isinstance(previous_progress, Mapping) else None
    if isinstance(before, int) and not isinstance(before, bool) and before >= 0:  # a stored value may be anything
        steps.append(before)
    return max(steps) if steps else None
