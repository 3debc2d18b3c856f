"""TuningSweep (elastic.training/v1alpha1): a hyperparameter search that runs each trial as a TrainingJob.

The user declares a search space, an objective and a trial template (a TrainingJob spec whose string fields may
hold `${params.NAME}` placeholders). The operator records every trial compactly in status (number, params, state,
value, a bounded set of intermediate values), which is all it needs to rebuild its study after a restart.

Size: status lives in one etcd object (1.5 MiB). With maxTrials <= 1000 and at most 64 intermediate values per
trial (the controller thins them to the pruner's rungs), a full status stays near 1 MiB in the worst case and a few
KiB typically.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, StrictInt, StrictStr, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from elastic_operator.api.common import (
    API_VERSION,
    DNS_1035_LABEL,
    MAX_SHORT,
    AnnotationMap,
    ApiModel,
    Conditions,
    IntOrString,
    LabelMap,
    ObjectMeta,
    Rule,
    Time,
    Value,
    list_map,
)
from elastic_operator.api.placeholders import (
    PARAM_NAME_PATTERN,
    ParamValue,
    format_value,
    placeholder_errors,
    render,
)
from elastic_operator.api.trainingjob import MAX_JOB_NAME, TrainingJobSpec

KIND: Final = "TuningSweep"
PLURAL: Final = "tuningsweeps"
MAX_PARAMETERS: Final = 32
MAX_CHOICES: Final = 64
MAX_TRIALS: Final = 1000
MAX_INTERMEDIATE: Final = 64
TRIAL_SUFFIX: Final = 5  # "-t999"
MAX_SWEEP_NAME: Final = MAX_JOB_NAME - TRIAL_SUFFIX
SWEEP_LABEL: Final = "elastic.training/sweep"
TRIAL_LABEL: Final = "elastic.training/trial"

TrialState = Literal["Pending", "Running", "Succeeded", "Pruned", "Failed"]
TRIAL_STATES: Final = ("Pending", "Running", "Succeeded", "Pruned", "Failed")
SweepPhase = Literal["Running", "Succeeded", "Failed", "Suspended"]

ParamName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=PARAM_NAME_PATTERN)]
Number = Annotated[float, Field(allow_inf_nan=False)]

WELL_FORMED = r"\\$\\{params\\.[A-Za-z_][A-Za-z0-9_]*\\}"
MALFORMED = r"\\$\\{params\\.([^A-Za-z_]|$|[A-Za-z_][A-Za-z0-9_]*([^A-Za-z0-9_}]|$))"
CEL_PLACEHOLDERS_PER_STRING = 2
"""The CEL rules check the first 2 placeholders of each string (more would exceed the API server's cost budget:
CEL cannot bound a loop over regex matches); the Python validation checks all of them."""


def _is_int(x: float | None) -> bool:
    return x is not None and float(x).is_integer()


class Parameter(ApiModel):
    """One dimension of the search space."""

    RULES = (
        Rule(
            "self.type == 'categorical' ? has(self.values) && !has(self.low) && !has(self.high) && !has(self.step) "
            "&& !self.log : has(self.low) && has(self.high) && !has(self.values)",
            "float and int parameters need low and high (and no values); categorical parameters need values "
            "(and no low, high, step or log)",
            check=lambda m: (
                m.values is not None and m.low is None and m.high is None and m.step is None and not m.log
                if m.type == "categorical"
                else m.low is not None and m.high is not None and m.values is None
            ),
        ),
        Rule(
            "!has(self.low) || !has(self.high) || (self.type == 'int' ? self.low <= self.high : self.low < self.high)",
            "low must be below high (int parameters: at most high)",
            ".low",
            check=lambda m: m.low is None or m.high is None or (m.low <= m.high if m.type == "int" else m.low < m.high),
        ),
        Rule(
            "!self.log || !has(self.low) || self.low > 0.0",
            "a log-scale parameter needs low > 0",
            ".low",
            check=lambda m: not m.log or m.low is None or m.low > 0,
        ),
        Rule(
            "!(self.log && has(self.step))",
            "step and log are mutually exclusive",
            ".step",
            check=lambda m: not (m.log and m.step is not None),
        ),
        Rule(
            "self.type != 'int' || ((!has(self.low) || double(int(self.low)) == self.low) && "
            "(!has(self.high) || double(int(self.high)) == self.high) && "
            "(!has(self.step) || double(int(self.step)) == self.step))",
            "an int parameter needs whole-number low, high and step",
            ".low",
            check=lambda m: m.type != "int" or all(x is None or _is_int(x) for x in (m.low, m.high, m.step)),
        ),
    )

    name: ParamName
    """Name of the parameter, used as `${params.NAME}` in the trial template."""
    type: Literal["float", "int", "categorical"]
    """float (continuous), int (whole numbers) or categorical (one of values)."""
    low: Number | None = None
    """Lowest value (float and int)."""
    high: Number | None = None
    """Highest value (float and int; included for int, and for float with a step)."""
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Discretisation step (float and int; int defaults to 1). Required for float parameters with the grid
    algorithm."""
    log: bool = False
    """Sample on a log scale (float and int; needs low > 0)."""
    values: Annotated[list[IntOrString], Field(min_length=1, max_length=MAX_CHOICES)] | None = None
    """The choices of a categorical parameter (integers or strings; quote other numbers, e.g. "0.5")."""


class Objective(ApiModel):
    """What the sweep optimises: a metric the trials report."""

    metric: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT)]
    """Name of the metric in the trainer's reports (status.progress.metrics of the trial), e.g. `val_accuracy`."""
    direction: Literal["minimize", "maximize"]
    """minimize or maximize."""
    target: Number | None = None
    """Stop the sweep once a trial reaches this value."""


class Algorithm(ApiModel):
    """How the next parameters are chosen."""

    name: Literal["random", "grid", "tpe", "cmaes"] = "tpe"
    """random, grid (every combination, in order), tpe (Tree-structured Parzen Estimator) or cmaes (CMA-ES,
    numeric parameters only)."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    """Seed of the sampler, for reproducible sweeps."""
    startup_trials: Annotated[int, Field(ge=0, le=MAX_TRIALS)] = 10
    """tpe and cmaes: random trials before the model-based sampler takes over."""


class MedianStopping(ApiModel):
    """Stop a trial whose intermediate value is worse than the median of earlier trials at the same point."""

    startup_trials: Annotated[int, Field(ge=0, le=MAX_TRIALS)] = 5
    """Never stop trials until this many trials completed."""
    warmup: Annotated[int, Field(ge=0, le=10**9)] = 0
    """Never stop a trial before this much resource (epochs or steps)."""
    interval: Annotated[int, Field(ge=1, le=10**9)] = 1
    """Check every this many resource units."""


class AshaStopping(ApiModel):
    """Asynchronous Successive Halving: at each rung, only the best 1/reductionFactor of trials continue."""

    RULES = (
        Rule(
            "!has(self.maxResource) || self.maxResource >= self.minResource",
            "maxResource must be at least minResource",
            ".maxResource",
            check=lambda m: m.max_resource is None or m.max_resource >= m.min_resource,
        ),
    )

    min_resource: Annotated[int, Field(ge=1, le=10**9)] = 1
    """Resource (epochs or steps) every trial gets before its first rung."""
    max_resource: Annotated[int, Field(ge=1, le=10**9)] | None = None
    """Resource of a full trial (default: learned from the first completed trial)."""
    reduction_factor: Annotated[int, Field(ge=2, le=100)] = 3
    """Only the best 1/reductionFactor of trials are promoted at each rung."""
    min_early_stopping_rate: Annotated[int, Field(ge=0, le=100)] = 0
    """Skip this many rungs before the first one that can stop trials."""


class EarlyStopping(ApiModel):
    """Stop unpromising trials early, from their intermediate values."""

    RULES = (
        Rule(
            "!has(self.median) || self.policy == 'median'",
            "median settings need policy: median",
            ".median",
            check=lambda m: m.median is None or m.policy == "median",
        ),
        Rule(
            "!has(self.asha) || self.policy == 'asha'",
            "asha settings need policy: asha",
            ".asha",
            check=lambda m: m.asha is None or m.policy == "asha",
        ),
    )

    policy: Literal["none", "median", "asha"] = "none"
    """none, median or asha."""
    resource: Literal["epoch", "step"] = "epoch"
    """What counts as a trial's progress for intermediate values: epoch or step (from its progress reports)."""
    median: MedianStopping | None = None
    """Settings of the median policy (defaults apply when unset)."""
    asha: AshaStopping | None = None
    """Settings of the asha policy (defaults apply when unset)."""


class Budget(ApiModel):
    """Limits of the whole sweep; when one is reached no new trials start and running ones finish."""

    RULES = (
        Rule(
            "has(self.gpuHours) || has(self.activeDeadlineSeconds)",
            "set gpuHours, activeDeadlineSeconds or both",
            check=lambda m: m.gpu_hours is not None or m.active_deadline_seconds is not None,
        ),
    )

    gpu_hours: Annotated[float, Field(gt=0, le=10**7, allow_inf_nan=False)] | None = Field(
        default=None, alias="gpuHours"
    )
    """GPU-hours all trials together may use."""
    active_deadline_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None
    """Seconds after the sweep started when no new trial starts."""


class TrialMetadata(ApiModel):
    """Labels and annotations of every trial's TrainingJob."""

    labels: LabelMap = Field(default_factory=dict)
    """Labels added to each trial (the operator adds elastic.training/sweep and elastic.training/trial)."""
    annotations: AnnotationMap = Field(default_factory=dict)
    """Annotations added to each trial."""


class TrialTemplate(ApiModel):
    """The TrainingJob each trial runs, with `${params.NAME}` placeholders in its string fields."""

    metadata: TrialMetadata = Field(default_factory=TrialMetadata)
    """Labels and annotations of each trial's TrainingJob."""
    spec: TrainingJobSpec
    """The trial's TrainingJob spec; placeholders may appear in string fields such as args and env values."""


def _placeholder_rule(field: str, each: str) -> Rule:
    """CEL: placeholders in the trial template's `field` (strings reached through `each`) are well formed and the
    first few name declared parameters. The Python twin (TuningSweepSpec._placeholders) covers every string."""
    items = f"self.trialTemplate.spec.template.{field}"
    names = "self.parameters.map(q, '${params.' + q.name + '}')"
    k = CEL_PLACEHOLDERS_PER_STRING
    found = f"{each}.findAll('{WELL_FORMED}', {k})"
    body = " && ".join(
        [f"!{each}.matches('{MALFORMED}')"] + [f"({found}.size() <= {i} || {found}[{i}] in {names})" for i in range(k)]
    )
    if field == "image":
        rule = body.replace("@", items)
    elif field == "env":
        rule = f"!has({items}) || {items}.all(e, !has(e.value) || ({body}))"
    elif field == "args":
        rule = f"!has({items}) || {items}.all(a, {body})"
    else:
        rule = f"{items}.all(a, {body})"
    return Rule(
        rule,
        f"placeholders in trialTemplate.spec.template.{field} must read ${{params.NAME}}, NAME one of parameters",
        f".trialTemplate.spec.template.{field}",
    )


class TuningSweepSpec(ApiModel):
    """The search: space, objective, algorithm, early stopping, limits and the trial template."""

    RULES = (
        Rule(
            "",  # the server enforces it through x-kubernetes-list-type: map
            "parameter names must be unique",
            ".parameters",
            check=lambda m: len({p.name for p in m.parameters}) == len(m.parameters),
        ),
        Rule(
            "self.parallelism <= self.maxTrials",
            "parallelism must not exceed maxTrials",
            ".parallelism",
            check=lambda m: m.parallelism <= m.max_trials,
        ),
        Rule(
            "self.algorithm.name != 'grid' || self.parameters.all(p, p.type != 'float' || has(p.step))",
            "the grid algorithm needs a step on every float parameter (or make it categorical)",
            ".algorithm.name",
            check=lambda m: (
                m.algorithm.name != "grid" or all(p.type != "float" or p.step is not None for p in m.parameters)
            ),
        ),
        Rule(
            "self.algorithm.name != 'cmaes' || self.parameters.exists(p, p.type != 'categorical')",
            "the cmaes algorithm needs at least one float or int parameter",
            ".algorithm.name",
            check=lambda m: m.algorithm.name != "cmaes" or any(p.type != "categorical" for p in m.parameters),
        ),
        _placeholder_rule("command", "a"),
        _placeholder_rule("args", "a"),
        _placeholder_rule("image", "@"),
    )

    parameters: Annotated[
        list[Parameter], Field(min_length=1, max_length=MAX_PARAMETERS, json_schema_extra=list_map("name"))
    ]
    """The search space: one entry per parameter."""
    objective: Objective
    """The metric to optimise and its direction."""
    algorithm: Algorithm = Field(default_factory=Algorithm, json_schema_extra={"default": Algorithm().to_json()})
    """The sampler that proposes parameters."""
    early_stopping: EarlyStopping = Field(
        default_factory=EarlyStopping, json_schema_extra={"default": EarlyStopping().to_json()}
    )
    """Pruning of unpromising trials."""
    max_trials: Annotated[int, Field(ge=1, le=MAX_TRIALS)] = 20
    """Trials to run in total (grid: at most the grid's size)."""
    parallelism: Annotated[int, Field(ge=1, le=100)] = 1
    """Trials running at the same time (each is a TrainingJob queued like any other)."""
    max_failed_trials: Annotated[int, Field(ge=0, le=MAX_TRIALS)] = 3
    """The sweep fails once more trials than this have failed (pruned trials are not failures)."""
    trial_template: TrialTemplate
    """The TrainingJob each trial runs."""
    budget: Budget | None = None
    """GPU-hours and/or time limit of the whole sweep."""

    @model_validator(mode="after")
    def _placeholders(self) -> Self:
        declared = [p.name for p in self.parameters]
        errors = placeholder_errors(self.trial_template.spec.to_json(), declared, "trialTemplate.spec")
        if errors:
            path, message = errors[0]
            raise PydanticCustomError("placeholder", "{message}", {"message": message, "field": "." + path})
        return self

    def render_trial(self, params: Mapping[str, ParamValue]) -> TrainingJobSpec:
        """The trial's TrainingJob spec with `params` substituted. Raises PlaceholderError (naming the field) for
        placeholders that name no given parameter, pydantic's ValidationError when the result is invalid."""
        rendered = render(self.trial_template.spec.to_json(), params, "spec.trialTemplate.spec")
        return TrainingJobSpec.model_validate(rendered)


class TrialRecord(ApiModel):
    """One trial, compactly: enough to rebuild the sampler's and the pruner's state."""

    number: Annotated[int, Field(ge=0, le=MAX_TRIALS)]
    """Trial number, from 0; the trial's TrainingJob is `<sweep>-t<number>`."""
    params: Annotated[dict[Annotated[str, StringConstraints(max_length=63)], Value], Field(max_length=MAX_PARAMETERS)]
    """Parameter values as substituted into the template (floats in their shortest exact form)."""
    state: TrialState
    """Pending, Running, Succeeded, Pruned or Failed."""
    value: Number | None = None
    """Final objective value (Succeeded) or last intermediate value (Pruned)."""
    intermediate: Annotated[
        dict[Annotated[str, StringConstraints(max_length=12, pattern=r"^[0-9]+$")], Number],
        Field(max_length=MAX_INTERMEDIATE),
    ] = Field(default_factory=dict)
    """Intermediate objective values by resource (epoch or step, as a decimal string), thinned to at most 64."""


class TrialCounts(ApiModel):
    """Trials by state."""

    total: Annotated[int, Field(ge=0)] = 0
    """Trials created so far."""
    pending: Annotated[int, Field(ge=0)] = 0
    """Trials whose TrainingJob is queued or starting."""
    running: Annotated[int, Field(ge=0)] = 0
    """Trials training now."""
    succeeded: Annotated[int, Field(ge=0)] = 0
    """Trials that completed and reported the objective."""
    pruned: Annotated[int, Field(ge=0)] = 0
    """Trials stopped early by the early-stopping policy."""
    failed: Annotated[int, Field(ge=0)] = 0
    """Trials whose TrainingJob failed or never reported the objective."""


class BestTrial(ApiModel):
    """The best completed trial so far."""

    number: Annotated[int, Field(ge=0)]
    """Trial number."""
    job_name: Annotated[str, StringConstraints(max_length=253)]
    """Name of the trial's TrainingJob."""
    params: Annotated[dict[Annotated[str, StringConstraints(max_length=63)], Value], Field(max_length=MAX_PARAMETERS)]
    """Its parameter values."""
    value: Number
    """Its objective value."""


class TuningSweepStatus(ApiModel):
    """What the operator observed and decided. Written only by the operator."""

    phase: SweepPhase = "Running"
    """Running, Succeeded (maxTrials, the target or the budget reached), Failed or Suspended."""
    message: Value = ""
    """Human-readable detail of the phase."""
    conditions: Conditions = Field(default_factory=list)
    """Conditions in the Kubernetes convention (e.g. InvalidSpec, TargetReached, BudgetExhausted)."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation of the spec this status reflects."""
    trial_counts: TrialCounts = Field(default_factory=TrialCounts)
    """Trials by state."""
    best_trial: BestTrial | None = None
    """The best completed trial so far."""
    trials: Annotated[list[TrialRecord], Field(max_length=MAX_TRIALS, json_schema_extra=list_map("number"))] = Field(
        default_factory=list
    )
    """Every trial, compactly (the study's state)."""
    next_trial_number: Annotated[int, Field(ge=0, le=MAX_TRIALS)] = 0
    """Number of the next trial to create."""
    gpu_hours_used: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(default=0.0, alias="gpuHoursUsed")
    """GPU-hours used by all trials so far."""
    start_time: Time | None = None
    """When the sweep started."""
    completion_time: Time | None = None
    """When the sweep finished."""


class TuningSweep(ApiModel):
    """A hyperparameter sweep: trials are TrainingJobs rendered from a template, chosen by random, grid, TPE or
    CMA-ES search, and stopped early by the median rule or ASHA."""

    RULES = (
        Rule(
            "",
            f"metadata.name must be a DNS label of at most {MAX_SWEEP_NAME} characters starting with a letter "
            "(trials are named <sweep>-t<number>)",
            ".metadata.name",
            check=lambda m: m.metadata.name is None or _valid_sweep_name(m.metadata.name),
        ),
    )

    api_version: Literal["elastic.training/v1alpha1"] = API_VERSION
    """APIVersion of the object: elastic.training/v1alpha1."""
    kind: Literal["TuningSweep"] = "TuningSweep"
    """Kind of the object: TuningSweep."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: TuningSweepSpec
    """The search, written by the user."""
    status: TuningSweepStatus | None = None
    """The observed state, written by the operator."""


def _valid_sweep_name(name: str) -> bool:
    return len(name) <= MAX_SWEEP_NAME and re.fullmatch(DNS_1035_LABEL, name) is not None


def trial_name(sweep: str, number: int) -> str:
    """Name of trial `number`'s TrainingJob."""
    return f"{sweep}-t{number}"


def trial_params_text(params: Mapping[str, ParamValue]) -> dict[str, str]:
    """Parameter values as recorded in status (the text substituted into the template)."""
    return {k: format_value(v) for k, v in params.items()}


def trial_manifest(sweep: TuningSweep, number: int, params: Mapping[str, ParamValue]) -> dict[str, Any]:
    """The TrainingJob of one trial, ready to create: rendered spec, the template's labels and annotations plus the
    sweep's, and (when the sweep's uid is known) an owner reference to the sweep."""
    name = sweep.metadata.name or ""
    spec = sweep.spec.render_trial(params)
    template_meta = sweep.spec.trial_template.metadata
    metadata: dict[str, Any] = {
        "name": trial_name(name, number),
        "labels": {**template_meta.labels, SWEEP_LABEL: name, TRIAL_LABEL: str(number)},
    }
    if sweep.metadata.namespace:
        metadata["namespace"] = sweep.metadata.namespace
    if template_meta.annotations:
        metadata["annotations"] = dict(template_meta.annotations)
    if sweep.metadata.uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": name,
                "uid": sweep.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {"apiVersion": API_VERSION, "kind": "TrainingJob", "metadata": metadata, "spec": spec.to_json()}


def is_finite(x: float) -> bool:
    return math.isfinite(x)


__all__ = ["StrictInt", "StrictStr"]
