"""Validate a TrainingJob or TuningSweep as the operator receives it (a JSON dict) and name every offending field.

The API server already enforces the CRD schema and its CEL rules, so objects that reach the operator normally pass.
These functions catch what the schema cannot say (every `${params.*}` placeholder anywhere, placeholders left in a
job no sweep rendered, the 3rd+ placeholder of a string) and objects stored before a CRD upgrade. The operator turns
the result into an `InvalidSpec` condition. Pure functions; status is parsed leniently and never makes spec invalid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from elastic_operator.api.common import ApiModel
from elastic_operator.api.placeholders import field_path
from elastic_operator.api.trainingjob import TrainingJob, TrainingJobStatus
from elastic_operator.api.tuningsweep import TuningSweep, TuningSweepStatus

Issue = tuple[str, str]
M = TypeVar("M", bound=ApiModel)


def _real_parts(obj: Any, loc: Sequence[str | int], keep_last: bool) -> list[str | int]:
    """The prefix of a pydantic error location that exists in `obj` (drops union tags such as `int` or `str`)."""
    parts: list[str | int] = []
    current = obj
    for i, part in enumerate(loc):
        in_map = isinstance(current, Mapping) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_map or in_list:
            current = current[part]
        elif keep_last and i == len(loc) - 1 and isinstance(current, Mapping):
            parts.append(part)
            break
        else:
            break
        parts.append(part)
    return parts


def issues_from(exc: ValidationError, obj: Any, prefix: str = "") -> list[Issue]:
    """(field path, message) for each error of a pydantic ValidationError raised while validating `obj`."""
    merged: dict[str, list[str]] = {}
    for err in exc.errors():
        parts = _real_parts(obj, err["loc"], keep_last=err["type"] == "missing")
        path = field_path(parts, prefix)
        ctx = err.get("ctx") or {}
        message = str(err["msg"])
        if err["type"] in ("rule", "placeholder") and ctx.get("field"):
            path = path + str(ctx["field"]) if path else str(ctx["field"]).lstrip(".")
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        messages = merged.setdefault(path or "<object>", [])
        if message not in messages:
            messages.append(message)
    return [(path, " or ".join(msgs)) for path, msgs in merged.items()]


def _validate(model: type[M], obj: Mapping[str, Any]) -> tuple[M | None, list[Issue]]:
    if not isinstance(obj, Mapping):
        return None, [("<object>", "not an object")]
    without_status = {k: v for k, v in obj.items() if k != "status"}
    try:
        parsed = model.model_validate(without_status)
    except ValidationError as exc:
        return None, issues_from(exc, without_status)
    return parsed, []


def validate_trainingjob(obj: Mapping[str, Any]) -> tuple[TrainingJob | None, list[Issue]]:
    """Parse a TrainingJob. Returns (model, []) when valid, else (model or None, [(field path, message), ...]).

    Paths are the wire names from the object's root, e.g. `spec.minWorkers`, `spec.template.args[2]`. Status is
    parsed when it can be (model.status stays None otherwise) and never produces an issue."""
    job, issues = _validate(TrainingJob, obj)
    if job is None:
        return None, issues
    job.status = parse_status(TrainingJobStatus, obj.get("status"))
    return job, []


def validate_tuningsweep(obj: Mapping[str, Any]) -> tuple[TuningSweep | None, list[Issue]]:
    """Parse a TuningSweep; like validate_trainingjob. Every placeholder in the trial template, in any string field,
    must be well formed and name a declared parameter (`spec.trialTemplate.spec.template.env[0].value: ...`)."""
    sweep, issues = _validate(TuningSweep, obj)
    if sweep is None:
        return None, issues
    sweep.status = parse_status(TuningSweepStatus, obj.get("status"))
    return sweep, []


def parse_status(model: type[M], raw: Any) -> M | None:
    """A status model, or None when the stored status is absent or does not parse."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def status_issues(model: type[M], raw: Any) -> list[Issue]:
    """(field path from `status`, message) for every field of a stored status that does not parse, e.g.
    `status.controller.placement[0].slot`. The operator reads such a status leniently (defaults for what does not
    parse) and says once which fields it ignored; its next status write repairs them."""
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        return [("status", "not an object")]
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        return issues_from(exc, raw, "status")
    return []


def trainingjob_issues(obj: Mapping[str, Any]) -> list[Issue]:
    """Just the issues of validate_trainingjob (empty when the object is valid)."""
    return validate_trainingjob(obj)[1]


def tuningsweep_issues(obj: Mapping[str, Any]) -> list[Issue]:
    """Just the issues of validate_tuningsweep (empty when the object is valid)."""
    return validate_tuningsweep(obj)[1]
