"""TrainingJob (elastic.training/v1alpha1): an elastic PyTorch job of `minWorkers`..`maxWorkers` worker pods.

The user writes `spec`; the operator never does. Every decision the operator takes lives in `status`, so the
controller is level-based: after a restart it reads status and carries on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Final, Literal, Self

from pydantic import Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from elastic_operator.api.common import (
    API_VERSION,
    DNS_1035_LABEL,
    MAX_ARGS,
    MAX_ENV,
    MAX_MAP,
    MAX_NAME,
    MAX_SHORT,
    MAX_TOLERATIONS,
    MAX_VOLUMES,
    AnnotationMap,
    ApiModel,
    Arg,
    Conditions,
    EnvVar,
    LabelMap,
    Name,
    ObjectMeta,
    Path,
    ResourceRequirements,
    Rule,
    ShortStr,
    Time,
    Toleration,
    Value,
    Volume,
    VolumeMount,
    list_map,
)
from elastic_operator.api.placeholders import leftover_placeholder_errors

KIND: Final = "TrainingJob"
PLURAL: Final = "trainingjobs"
MAX_WORKERS: Final = 1024
MAX_JOB_NAME: Final = 52
"""A job's name is a label value and names its Service (`<name>-rdzv`), so it is a short DNS label."""

PHASES: Final = ("Queued", "Starting", "Running", "Rescaling", "Succeeded", "Failed", "Suspended")
Phase = Literal["Queued", "Starting", "Running", "Rescaling", "Succeeded", "Failed", "Suspended"]
RESTART_CAUSES: Final = ("workerFailed", "workerLost", "rendezvousLost")
RESCALE_KINDS: Final = ("grow", "shrink", "requeue")
DECISION_ACTIONS: Final = ("admit", "grow", "shrink", "requeue", "wait")

Seconds = Annotated[int, Field(ge=0, le=10 * 365 * 86400)]
Count = Annotated[int, Field(ge=0)]


def _unique(keys: Iterable[str]) -> bool:
    seen = list(keys)
    return len(seen) == len(set(seen))


def _starts_with_launcher(command: list[str]) -> bool:
    return len(command) >= 2 and command[0] == "elastic-trainer" and command[1] == "launch"


class WorkerPodTemplate(ApiModel):
    """What every worker pod runs: one training container (run under the elastic launcher) and its pod settings."""

    RULES = (
        Rule(
            "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
            "self.volumes.exists(v, v.name == m.name))",
            "every volumeMounts[].name must name one of volumes",
            ".volumeMounts",
            check=lambda m: all(any(v.name == x.name for v in m.volumes) for x in m.volume_mounts),
        ),
        Rule(
            "!(self.command.size() >= 2 && self.command[0] == 'elastic-trainer' && self.command[1] == 'launch')",
            "command is run under `elastic-trainer launch --` already: give the training command itself",
            ".command",
            check=lambda m: not _starts_with_launcher(m.command),
        ),
        # list-map keys are unique: the server enforces it through x-kubernetes-list-type: map
        Rule("", "env names must be unique", ".env", check=lambda m: _unique(e.name for e in m.env)),
        Rule("", "volume names must be unique", ".volumes", check=lambda m: _unique(v.name for v in m.volumes)),
        Rule(
            "",
            "volumeMounts[].mountPath must be unique",
            ".volumeMounts",
            check=lambda m: _unique(x.mount_path for x in m.volume_mounts),
        ),
    )

    image: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    """Container image of the workers. It must contain the `elastic-trainer` launcher (the trainer image does)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """When to pull the image (the Kubernetes default applies when unset)."""
    command: Annotated[list[Arg], Field(min_length=1, max_length=MAX_ARGS)]
    """The training command, e.g. `[python, -m, mypackage.train]`. Each worker runs it under the launcher as
    `elastic-trainer launch -- <command> <args>`, which starts `nprocPerWorker` processes via torchrun."""
    args: Annotated[list[Arg], Field(max_length=MAX_ARGS)] = Field(default_factory=list)
    """Arguments appended to command. In a sweep's trial template they may hold `${params.NAME}` placeholders."""
    working_dir: Path | None = None
    """Working directory of the training container."""
    env: Annotated[list[EnvVar], Field(max_length=MAX_ENV, json_schema_extra=list_map("name"))] = Field(
        default_factory=list
    )
    """Environment variables of the training container (the operator adds its own ELASTIC_* variables)."""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    """Resources of one worker pod, e.g. `limits: {nvidia.com/gpu: 8}`. The scheduler places whole workers."""
    volumes: Annotated[list[Volume], Field(max_length=MAX_VOLUMES, json_schema_extra=list_map("name"))] = Field(
        default_factory=list
    )
    """Volumes of the worker pod (datasets, caches, checkpoints)."""
    volume_mounts: Annotated[
        list[VolumeMount], Field(max_length=MAX_VOLUMES, json_schema_extra=list_map("mountPath"))
    ] = Field(default_factory=list)
    """Where volumes appear in the training container."""
    node_selector: LabelMap = Field(default_factory=dict)
    """Workers run only on nodes with all these labels."""
    tolerations: Annotated[list[Toleration], Field(max_length=MAX_TOLERATIONS)] = Field(default_factory=list)
    """Taints the workers tolerate."""
    labels: LabelMap = Field(default_factory=dict)
    """Extra labels of the worker pods (the operator's own labels win on conflict)."""
    annotations: AnnotationMap = Field(default_factory=dict)
    """Extra annotations of the worker pods."""


class ElasticityPolicy(ApiModel):
    """How the operator may change the number of workers of a running job."""

    rescale_cooldown_seconds: Annotated[int, Field(ge=0, le=86400)] = 60
    """Minimum time between two rescales of this job (each rescale pauses training for a checkpoint and a restart)."""
    allow_shrink: bool = True
    """Whether the operator may take workers away (down to minWorkers) to admit higher-priority jobs."""
    allow_requeue: bool = True
    """Whether the operator may stop the job entirely (it resumes later from its checkpoint) to admit
    higher-priority jobs."""


class CheckpointSpec(ApiModel):
    """Where and how often workers checkpoint. A rescale always checkpoints first; this adds periodic ones."""

    RULES = (
        Rule(
            "[has(self.claimName), has(self.hostPath), has(self.volumeName)].filter(x, x).size() <= 1",
            "at most one of claimName, hostPath or volumeName may be set",
            check=lambda m: [m.claim_name, m.host_path, m.volume_name].count(None) >= 2,
        ),
    )

    path: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^/")] = "/checkpoints"
    """Where the checkpoint volume is mounted in the training container. Each job writes and reads its own
    directory in it, `<path>/<namespace>/<job name>` (ELASTIC_CHECKPOINT_DIR), so jobs and a sweep's trials can
    share one volume without resuming from each other's checkpoints."""
    claim_name: Name | None = None
    """Mount this PersistentVolumeClaim at path (ReadWriteMany when workers run on several nodes)."""
    host_path: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^/")] | None = None
    """Mount this directory of the node at path (single-node and development clusters only)."""
    volume_name: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    """Name of a volume in template.volumes that holds path (mounted by template.volumeMounts)."""
    interval_seconds: Annotated[int, Field(ge=0, le=86400)] = 600
    """Checkpoint at least this often (seconds, at the next step boundary); 0 disables time-based checkpoints."""
    interval_steps: Annotated[int, Field(ge=0, le=10**9)] = 0
    """Checkpoint every this many steps; 0 disables step-based checkpoints."""
    keep: Annotated[int, Field(ge=1, le=100)] = 2
    """How many recent checkpoints to keep."""


class FailurePolicy(ApiModel):
    """What happens when training fails. Rescales, preemptions and lost nodes never consume this budget."""

    RULES = (
        Rule(
            "self.backoffSeconds <= self.maxBackoffSeconds",
            "backoffSeconds must not exceed maxBackoffSeconds",
            ".backoffSeconds",
            check=lambda m: m.backoff_seconds <= m.max_backoff_seconds,
        ),
    )

    max_restarts: Annotated[int, Field(ge=0, le=1000)] = 3
    """Restarts after the training process itself failed, before the job is marked Failed."""
    backoff_seconds: Annotated[int, Field(ge=0, le=86400)] = 10
    """Wait before the first restart after a failure; doubled after each further failure."""
    max_backoff_seconds: Annotated[int, Field(ge=0, le=86400)] = 300
    """Upper bound of the restart backoff."""


class TrainingJobSpec(ApiModel):
    """The desired job: what each worker runs and how elastic it may be."""

    RULES = (
        Rule(
            "self.minWorkers <= self.maxWorkers",
            "minWorkers must not exceed maxWorkers",
            ".minWorkers",
            check=lambda m: m.min_workers <= m.max_workers,
        ),
        Rule(
            "!has(self.checkpoint) || !has(self.checkpoint.volumeName) || (has(self.template.volumes) && "
            "self.template.volumes.exists(v, v.name == self.checkpoint.volumeName))",
            "checkpoint.volumeName must name one of template.volumes",
            ".checkpoint.volumeName",
            check=lambda m: (
                m.checkpoint is None
                or m.checkpoint.volume_name is None
                or any(v.name == m.checkpoint.volume_name for v in m.template.volumes)
            ),
        ),
    )

    template: WorkerPodTemplate
    """The worker pod: image, command, resources, volumes, scheduling constraints."""
    min_workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    """The job starts only when this many workers fit at once (gang admission), and never runs with fewer."""
    max_workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)]
    """The operator grows the job up to this many workers when capacity is free."""
    nproc_per_worker: Annotated[int, Field(ge=1, le=128)] = 1
    """Training processes per worker pod (torchrun --nproc-per-node), typically one per GPU."""
    priority: Annotated[int, Field(ge=-(10**9), le=10**9)] = 0
    """Queue priority: higher runs first, may shrink or requeue lower-priority jobs, and is shrunk last."""
    priority_class_name: Name | None = None
    """Kubernetes PriorityClass of the worker pods (pod preemption by the scheduler; independent of priority)."""
    elasticity: ElasticityPolicy = Field(
        default_factory=ElasticityPolicy, json_schema_extra={"default": ElasticityPolicy().to_json()}
    )
    """Rescale cooldown and whether the job may be shrunk or requeued."""
    checkpoint: CheckpointSpec | None = None
    """Checkpoint storage and cadence. Without it, checkpoints go to an emptyDir at /checkpoints and do not
    survive a worker's pod (a new worker starts from the beginning)."""
    failure_policy: FailurePolicy = Field(
        default_factory=FailurePolicy, json_schema_extra={"default": FailurePolicy().to_json()}
    )
    """Restart budget and backoff for training failures."""
    suspend: bool = False
    """When true, the operator stops every worker (after a checkpoint) and keeps the job Suspended until false."""
    ttl_seconds_after_finished: Seconds | None = None
    """Delete the job this many seconds after it Succeeded or Failed (kept forever when unset)."""
    active_deadline_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None
    """Fail the job when it has been admitted for longer than this many seconds."""


# --- status --------------------------------------------------------------------------------------------------------


class WorkerCounts(ApiModel):
    """How many workers the job has and should have."""

    current: Count = 0
    """Workers taking part in the current rescale generation."""
    target: Count = 0
    """Workers the operator has placed (current plus those being added)."""


class RestartCounts(ApiModel):
    """Restarts by cause. Only workerFailed consumes failurePolicy.maxRestarts."""

    worker_failed: Count = 0
    """The training process exited with an error."""
    worker_lost: Count = 0
    """A worker pod or its node disappeared."""
    rendezvous_lost: Count = 0
    """The job's rendezvous pod was lost and replaced."""


class RescaleCounts(ApiModel):
    """Rescales by kind (none of them consumes the failure budget)."""

    grow: Count = 0
    """Workers added to a running job."""
    shrink: Count = 0
    """Workers taken from a running job."""
    requeue: Count = 0
    """The job was stopped and queued again (it resumes from its checkpoint)."""


class Progress(ApiModel):
    """Training progress, from the workers' reports."""

    step: Count = 0
    """Global optimizer step."""
    epoch: Count = 0
    """Current epoch."""
    samples_per_second: Annotated[float, Field(ge=0)] = 0.0
    """Job-wide training throughput at the current worker count."""
    metrics: Annotated[dict[ShortStr, float], Field(max_length=MAX_MAP)] = Field(default_factory=dict)
    """Latest value of each reported metric, e.g. loss, accuracy."""
    last_checkpoint_step: Count | None = None
    """Step of the latest complete checkpoint."""
    remaining_samples: Count | None = None
    """Samples training still has to process, when the trainer reports it: a rescale that would not pay off
    before the end is not made."""
    last_report_time: Time | None = None
    """When the operator last received a report."""


class Decision(ApiModel):
    """The scheduling policy's latest decision about this job, with its reason and inputs."""

    action: Literal["admit", "grow", "shrink", "requeue", "wait"]
    """admit, grow, shrink, requeue or wait."""
    reason: Value = ""
    """Why, in words."""
    target_workers: Count | None = None
    """Workers after the decision."""
    queue_position: Count | None = None
    """Position in the queue (0 is the head) when the job is queued."""
    queue_depth: Count | None = None
    """Jobs waiting in the queue at decision time."""
    free_gpus: Count | None = Field(default=None, alias="freeGPUs")
    """GPUs free in the cluster at decision time."""
    blocking_cause: Value | None = None
    """What keeps a queued job from starting (e.g. which resource is short)."""
    inputs: Annotated[dict[ShortStr, Value], Field(max_length=MAX_MAP)] = Field(default_factory=dict)
    """Further inputs of the decision, as text."""
    time: Time | None = None
    """When the decision was taken."""


class SlotPlacement(ApiModel):
    """One worker position and the node it was placed on."""

    slot: Count
    """Slot number (never reused within a job; worker pods are named `<job>-w<slot>`)."""
    node: Annotated[str, StringConstraints(max_length=MAX_NAME)]
    """Node the slot's pod is pinned to."""
    seen: bool = False
    """The slot's pod has been observed at least once (a missing pod is then lost, not pending)."""


class LeavingSlot(ApiModel):
    """A slot told to checkpoint and exit."""

    slot: Count
    """Slot number."""
    since: Time | None = None
    """When it was told to exit; it is deleted on its acknowledgement or after the shrink deadline."""


class ControllerState(ApiModel):
    """Bookkeeping that makes the controller level-based: with it, a restarted operator resumes where it stopped.
    Written by the operator only; not meant for users."""

    placement: Annotated[list[SlotPlacement], Field(max_length=MAX_WORKERS)] = Field(default_factory=list)
    """Slots that should have a worker pod now."""
    members: Annotated[list[Count], Field(max_length=MAX_WORKERS)] = Field(default_factory=list)
    """Slots taking part in the current rescale generation."""
    leaving: Annotated[list[LeavingSlot], Field(max_length=MAX_WORKERS)] = Field(default_factory=list)
    """Slots told to checkpoint and exit."""
    next_slot: Count = 0
    """Next slot number to hand out."""
    rendezvous_pod: Annotated[str, StringConstraints(max_length=MAX_NAME)] = ""
    """Name of the current rendezvous pod."""
    rendezvous_seen: bool = False
    """The current rendezvous pod has been observed."""
    rendezvous_count: Count = 0
    """Rendezvous pods created so far (names the next one)."""
    recent_failures: Annotated[list[Time], Field(max_length=MAX_SHORT)] = Field(default_factory=list)
    """Times of recent budget-consuming failures (the crash-loop breaker's window)."""
    generation_started: Time | None = None
    """When the current rescale generation was opened."""
    attained_worker_seconds: Annotated[float, Field(ge=0)] = 0.0
    """Service the job has had so far, in worker-seconds, banked whenever its worker count changes (the queue
    serves the least-served job first within a priority class)."""
    attained_since: Time | None = None
    """Since when the current workers have been adding to attainedWorkerSeconds."""


class TrainingJobStatus(ApiModel):
    """What the operator observed and decided. Written only by the operator."""

    phase: Phase = "Queued"
    """Queued, Starting, Running, Rescaling, Succeeded, Failed or Suspended."""
    message: Value = ""
    """Human-readable detail of the phase."""
    conditions: Conditions = Field(default_factory=list)
    """Admitted, Running, Rescaling, Suspended, Succeeded, Failed and InvalidSpec, in the Kubernetes convention."""
    observed_generation: Count | None = None
    """The metadata.generation of the spec this status reflects."""
    rescale_generation: Count = 0
    """The rescale generation: incremented each time the worker set changes and torchrun restarts
    (not metadata.generation)."""
    workers: WorkerCounts = Field(default_factory=WorkerCounts)
    """Current and target worker counts."""
    restarts: RestartCounts = Field(default_factory=RestartCounts)
    """Restarts by cause."""
    rescales: RescaleCounts = Field(default_factory=RescaleCounts)
    """Rescales by kind."""
    progress: Progress | None = None
    """Training progress from the workers' reports."""
    start_time: Time | None = None
    """When the job was first admitted."""
    completion_time: Time | None = None
    """When the job Succeeded or Failed."""
    last_rescale_time: Time | None = None
    """When the job was last rescaled."""
    last_rescale_pause_seconds: Annotated[float, Field(ge=0)] | None = None
    """How long training stood still in the latest rescale: from the moment the workers were told to stop to the
    last worker's first report from the new generation (checkpoint, restart and rendezvous included)."""
    last_decision: Decision | None = None
    """The scheduling policy's latest decision about this job."""
    controller: ControllerState = Field(default_factory=ControllerState)
    """Operator bookkeeping (placement, members, leaving slots, rendezvous) that keeps the controller level-based."""


class TrainingJob(ApiModel):
    """An elastic PyTorch training job: minWorkers..maxWorkers worker pods that the operator grows and shrinks
    with the cluster's capacity, restarting training from a checkpoint at each change."""

    RULES = (
        Rule(
            "",
            f"metadata.name must be a DNS label of at most {MAX_JOB_NAME} characters starting with a letter "
            "(it names the job's pods and service)",
            ".metadata.name",
            check=lambda m: m.metadata.name is None or _valid_job_name(m.metadata.name),
        ),
        Rule(
            "!self.spec.template.command.exists(a, a.contains('${params.')) && "
            "(!has(self.spec.template.args) || !self.spec.template.args.exists(a, a.contains('${params.'))) && "
            "(!has(self.spec.template.env) || !self.spec.template.env.exists(e, has(e.value) && "
            "e.value.contains('${params.'))) && !self.spec.template.image.contains('${params.')",
            "${params.*} placeholders are only allowed in a TuningSweep's trialTemplate",
            ".spec.template",
            # the Python twin is _no_placeholders below: it checks every field and names the exact one
        ),
    )

    api_version: Literal["elastic.training/v1alpha1"] = API_VERSION
    """APIVersion of the object: elastic.training/v1alpha1."""
    kind: Literal["TrainingJob"] = "TrainingJob"
    """Kind of the object: TrainingJob."""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""
    spec: TrainingJobSpec
    """The desired job, written by the user."""
    status: TrainingJobStatus | None = None
    """The observed state, written by the operator."""

    @model_validator(mode="after")
    def _no_placeholders(self) -> Self:
        errors = leftover_placeholder_errors(self.spec.to_json(), "spec")
        if errors:
            path, message = errors[0]
            raise PydanticCustomError("placeholder", "{message}", {"message": message, "field": "." + path})
        return self


def _valid_job_name(name: str) -> bool:
    return len(name) <= MAX_JOB_NAME and re.fullmatch(DNS_1035_LABEL, name) is not None
