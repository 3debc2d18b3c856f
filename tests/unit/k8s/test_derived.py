"""StatusDerived: what a round derives from a job's status is reused exactly while the status is the same object."""

from __future__ import annotations

import copy

from elastic_operator.k8s.derived import StatusDerived, derive
from elastic_operator.lifecycle.state import RUNNING

STATUS = {
    "phase": "Running",
    "rescaleGeneration": 3,
    "conditions": [
        {
            "type": "Running",
            "status": "True",
            "reason": "Running",
            "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        },
        {"type": 7},
    ],
    "controller": {"placement": [{"slot": "zero", "node": "n1"}]},
}


def job(status: object) -> dict[str, object]:
    return {"metadata": {"name": "a", "namespace": "ns", "uid": "u"}, "status": status}


def test_derive_reads_runtime_issues_and_valid_conditions() -> None:
    d = derive(STATUS)
    assert d.runtime.phase == RUNNING and d.runtime.rescale_generation == 3
    assert [c["type"] for c in d.conditions] == ["Running"]  # the malformed entry is not a condition
    assert any(path.startswith("status.conditions[1]") for path, _ in d.issues)
    assert any(path.startswith("status.controller.placement[0]") for path, _ in d.issues)
    assert derive(None).issues == () and derive(None).conditions == ()


def test_reused_while_the_status_is_the_same_object_and_recomputed_for_a_new_one() -> None:
    memo = StatusDerived()
    obj = job(STATUS)
    first = memo.of(("ns", "a"), obj)
    assert memo.of(("ns", "a"), {**obj}) is first  # a new wrapper around the same status object
    equal_copy = job(copy.deepcopy(STATUS))
    again = memo.of(("ns", "a"), equal_copy)
    assert again is not first and again == derive(equal_copy["status"])
    changed = job({**STATUS, "phase": "Queued"})
    assert memo.of(("ns", "a"), changed).runtime.phase == "Queued"


def test_forget_drops_jobs_that_are_gone() -> None:
    memo = StatusDerived()
    obj = job(STATUS)
    first = memo.of(("ns", "a"), obj)
    memo.of(("ns", "b"), job(STATUS))
    memo.forget({("ns", "b")})
    assert memo.of(("ns", "a"), obj) is not first
