"""What a planning round derives from each job's stored status, kept while the status is the same object.

Every round reads every job's status three ways: its runtime (lifecycle.state.from_status), the fields that do not
parse (said once in an event), and its valid conditions. At 2,000 jobs that was most of a quiet round (bench/scale).
The view replaces a job's object on every watch event and never edits one in place, and the controller's own writes
come back as new objects too, so while a job's status is the same object (identity, the object kept alive by the
memo, so its id cannot be reused) the derived facts are too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elastic_operator.api.common import Condition
from elastic_operator.api.trainingjob import TrainingJobStatus
from elastic_operator.api.validation import parse_status, status_issues
from elastic_operator.k8s.view import Key
from elastic_operator.lifecycle.state import JobRuntime, from_status

JSON = dict[str, Any]


def valid_conditions(value: Any) -> list[JSON]:
    """The entries of a stored conditions list that are conditions (others are dropped by the next write)."""
    return (
        [c for c in value if isinstance(c, dict) and parse_status(Condition, c) is not None]
        if isinstance(value, list)
        else []
    )


@dataclass(frozen=True)
class Derived:
    status: Any  # the status object these were derived from
    runtime: JobRuntime
    issues: tuple[tuple[str, str], ...]  # (field path, message) of fields read as their default
    conditions: tuple[JSON, ...]  # the valid entries of status.conditions


def derive(status: Any) -> Derived:
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return Derived(
        status=status,
        runtime=from_status(status),
        issues=tuple(status_issues(TrainingJobStatus, status)),
        conditions=tuple(valid_conditions(conditions)),
    )


class StatusDerived:
    """One `Derived` per job, recomputed when its status object changes."""

    def __init__(self) -> None:
        self._by_job: dict[Key, Derived] = {}

    def of(self, key: Key, obj: JSON) -> Derived:
        status = obj.get("status")
        found = self._by_job.get(key)
        if found is None or found.status is not status:
            found = self._by_job[key] = derive(status)
        return found

    def forget(self, live: set[Key]) -> None:
        for key in [k for k in self._by_job if k not in live]:
            del self._by_job[key]
