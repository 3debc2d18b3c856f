"""The contract between the operator and the trainer runtime (pure: pydantic and the standard library only).

The operator imports this module to render worker pods and to parse reports; the launcher imports it to read its
environment, build reports and parse directives. One source of truth for:

* the environment variables of a worker pod (``ENV_*`` names, ``WORKER_ENV`` and ``build_worker_env()``),
* the report a launcher POSTs (``Report``) and the directive the operator answers with (``Directive``),
* the HTTP path and authentication (``report_path()``, ``report_url()``, ``auth_header()``),
* the variables the launcher hands down to the training processes (``ENV_CONTROL_DIR`` and friends).

HTTP: ``POST {ELASTIC_REPORT_URL}/v1/namespaces/{namespace}/trainingjobs/{name}/reports`` with
``Authorization: Bearer <ELASTIC_TOKEN>`` and a ``Report`` as JSON body; a 200 answer's body is the ``Directive`` for
the reporting pod. 401: bad token; 400: malformed report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONTRACT_VERSION: Final = "v1"

# --- environment of a worker pod (set by the operator) -------------------------------------------------------------
ENV_JOB_NAMESPACE: Final = "ELASTIC_JOB_NAMESPACE"
ENV_JOB_NAME: Final = "ELASTIC_JOB_NAME"
ENV_JOB_UID: Final = "ELASTIC_JOB_UID"
ENV_POD_NAME: Final = "ELASTIC_POD_NAME"
ENV_REPORT_URL: Final = "ELASTIC_REPORT_URL"  # base URL of the operator's report endpoint, e.g. http://svc:8080
ENV_TOKEN: Final = "ELASTIC_TOKEN"  # per-job bearer token, from a Secret
ENV_CHECKPOINT_DIR: Final = "ELASTIC_CHECKPOINT_DIR"  # shared by all pods of the job (PVC or host path)
ENV_NPROC_PER_WORKER: Final = "ELASTIC_NPROC_PER_WORKER"  # processes (ranks) per pod, torchrun --nproc-per-node
ENV_POD_IP: Final = "ELASTIC_POD_IP"  # this pod's IP (fieldRef status.podIP): torchrun --local-addr; else $POD_IP
# optional tuning (defaults in DEFAULTS)
ENV_REPORT_INTERVAL_S: Final = "ELASTIC_REPORT_INTERVAL_S"  # report period while training runs
ENV_WAIT_POLL_S: Final = "ELASTIC_WAIT_POLL_S"  # report period while waiting for a directive
ENV_CHECKPOINT_INTERVAL_STEPS: Final = "ELASTIC_CHECKPOINT_INTERVAL_STEPS"  # periodic checkpoints; 0 = library default
ENV_CHECKPOINT_KEEP: Final = "ELASTIC_CHECKPOINT_KEEP"  # how many checkpoints to keep
ENV_STOP_TIMEOUT_S: Final = "ELASTIC_STOP_TIMEOUT_S"  # checkpoint-and-stop deadline before the launcher kills
ENV_FAILURE_GRACE_S: Final = "ELASTIC_FAILURE_GRACE_S"  # after a failure, wait this long for a new generation
ENV_RDZV_JOIN_TIMEOUT_S: Final = "ELASTIC_RDZV_JOIN_TIMEOUT_S"  # torchrun join_timeout for one generation
ENV_PG_TIMEOUT_S: Final = "ELASTIC_PG_TIMEOUT_S"  # process-group (gloo/nccl) collective timeout
ENV_STOP_CHECK_EVERY: Final = "ELASTIC_STOP_CHECK_EVERY"  # agree on "stop?" every k steps (one all_reduce)
ENV_WARM_AGENT: Final = "ELASTIC_WARM_AGENT"  # 1: keep a torchrun with torch imported ready (faster starts)

# --- set by the launcher for the training processes (never by the operator) ---------------------------------------
ENV_CONTROL_DIR: Final = "ELASTIC_CONTROL_DIR"  # local directory: stop flag, progress file, stopped marker
ENV_GENERATION: Final = "ELASTIC_GENERATION"
ENV_NNODES: Final = "ELASTIC_NNODES"

DEFAULTS: Final[Mapping[str, str]] = {
    ENV_NPROC_PER_WORKER: "1",
    ENV_REPORT_INTERVAL_S: "5",
    ENV_WAIT_POLL_S: "0.5",
    ENV_CHECKPOINT_INTERVAL_STEPS: "0",
    ENV_CHECKPOINT_KEEP: "3",
    ENV_STOP_TIMEOUT_S: "30",
    ENV_FAILURE_GRACE_S: "180",
    ENV_RDZV_JOIN_TIMEOUT_S: "60",
    ENV_PG_TIMEOUT_S: "30",
    ENV_STOP_CHECK_EVERY: "1",
    ENV_WARM_AGENT: "1",
}

# Files inside ENV_CONTROL_DIR (launcher <-> local training processes).
CONTROL_STOP_FILE: Final = "stop"  # exists: the launcher asks for checkpoint-and-stop at the next step boundary
CONTROL_STOPPED_FILE: Final = "stopped"  # JSON {"step": n}: training stopped on request after checkpointing
CONTROL_PROGRESS_FILE: Final = "progress.json"  # latest Progress from local rank 0
CONTROL_READY_FILE: Final = "ready"  # the generation's process group is up and its code honours the go gate
CONTROL_FAILED_FILE: Final = "failed"  # a rank failed (e.g. a peer was lost): the launcher need not wait for torchrun
CONTROL_GO_FILE: Final = "go"  # the launcher lets a prepared generation load the checkpoint and train


@dataclass(frozen=True)
class EnvVarSpec:
    """One variable of a worker pod: where its value comes from (for renderers and docs)."""

    name: str
    source: Literal["value", "pod-name", "pod-ip", "secret"]
    required: bool
    description: str


WORKER_ENV: Final[tuple[EnvVarSpec, ...]] = (
    EnvVarSpec(ENV_JOB_NAMESPACE, "value", True, "namespace of the TrainingJob"),
    EnvVarSpec(ENV_JOB_NAME, "value", True, "name of the TrainingJob"),
    EnvVarSpec(ENV_JOB_UID, "value", True, "uid of the TrainingJob (rendezvous ids are <uid>-g<generation>)"),
    EnvVarSpec(ENV_POD_NAME, "pod-name", True, "this pod's name (fieldRef metadata.name)"),
    EnvVarSpec(ENV_REPORT_URL, "value", True, "base URL of the operator's report endpoint"),
    EnvVarSpec(ENV_TOKEN, "secret", True, "the job's report token (secretKeyRef)"),
    EnvVarSpec(ENV_CHECKPOINT_DIR, "value", True, "checkpoint directory shared by every pod of the job"),
    EnvVarSpec(ENV_POD_IP, "pod-ip", False, "this pod's IP (fieldRef status.podIP), the address peers dial"),
    EnvVarSpec(ENV_NPROC_PER_WORKER, "value", False, "training processes per pod (default 1)"),
    EnvVarSpec(ENV_REPORT_INTERVAL_S, "value", False, "seconds between reports while training (default 5)"),
    EnvVarSpec(ENV_CHECKPOINT_INTERVAL_STEPS, "value", False, "periodic checkpoint every n steps"),
    EnvVarSpec(ENV_CHECKPOINT_KEEP, "value", False, "checkpoints kept (default 3)"),
)


def build_worker_env(
    *,
    namespace: str,
    name: str,
    uid: str,
    report_url: str,
    token_secret: str,
    token_key: str,
    checkpoint_dir: str,
    nproc_per_worker: int = 1,
    extra: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Kubernetes EnvVar dicts for a worker container (the pod name comes from the downward API, the token from a
    Secret). ``extra`` adds optional tuning variables (ENV_REPORT_INTERVAL_S, ...)."""
    env: list[dict[str, Any]] = [
        {"name": ENV_JOB_NAMESPACE, "value": namespace},
        {"name": ENV_JOB_NAME, "value": name},
        {"name": ENV_JOB_UID, "value": uid},
        {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": ENV_POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": ENV_REPORT_URL, "value": report_url},
        {"name": ENV_TOKEN, "valueFrom": {"secretKeyRef": {"name": token_secret, "key": token_key}}},
        {"name": ENV_CHECKPOINT_DIR, "value": checkpoint_dir},
        {"name": ENV_NPROC_PER_WORKER, "value": str(nproc_per_worker)},
    ]
    for k, v in sorted((extra or {}).items()):
        if not k.startswith("ELASTIC_"):
            raise ValueError(f"{k}: trainer variables start with ELASTIC_")
        env.append({"name": k, "value": v})
    return env


# --- HTTP ------------------------------------------------------------------------------------------------------------
REPORT_ROUTE: Final = "/v1/namespaces/{namespace}/trainingjobs/{name}/reports"  # aiohttp route syntax


def report_path(namespace: str, name: str) -> str:
    """The path a launcher POSTs its reports to."""
    for part in (namespace, name):
        if not part or "/" in part:
            raise ValueError(f"invalid namespace or name: {part!r}")
    return REPORT_ROUTE.format(namespace=namespace, name=name)


def report_url(base_url: str, namespace: str, name: str) -> str:
    return base_url.rstrip("/") + report_path(namespace, name)


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- reports and directives -------------------------------------------------------------------------------------------
class TrainerState(StrEnum):
    """What a launcher is doing. Compare with plain strings (StrEnum)."""

    STARTING = "starting"  # started, no directive acted on yet, or torchrun starting (rendezvous, loading)
    RUNNING = "running"  # training steps are being taken in `generation`
    CHECKPOINTING = "checkpointing"  # asked training to checkpoint and stop; waiting for it
    WAITING = "waiting"  # no training process; waiting for a directive (after a stop, or checkpoint-and-wait)
    SUCCEEDED = "succeeded"  # training finished (the training command exited 0 without being asked to stop)
    FAILED = "failed"  # the generation failed (cause in failure_cause); waiting for a new generation
    EXITED = "exited"  # left after `exit` or SIGTERM, with its checkpoint written (last_checkpoint_step)


class Action(StrEnum):
    RUN = "run"
    CHECKPOINT_AND_WAIT = "checkpoint-and-wait"
    EXIT = "exit"


Name = Annotated[str, Field(min_length=1, max_length=253)]
Metrics = dict[Annotated[str, Field(min_length=1, max_length=128)], float]
MAX_COUNT: Final = 2**53
"""Upper bound of a report's counters: the operator copies them into status (int64 on the API server; exact in
every JSON reader up to 2**53). A larger number is refused with the field named, not stored."""


class Report(BaseModel):
    """POSTed by each pod's launcher every few seconds and at once on state changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: Name
    job: Name
    pod: Name
    generation: int = Field(default=0, ge=0, le=MAX_COUNT, description="generation acted on; 0 = none yet")
    state: TrainerState
    step: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="global optimizer steps done (the job's, not the pod's)"
    )
    epoch: int = Field(default=0, ge=0, le=MAX_COUNT)
    samples_per_s: float = Field(
        default=0.0, ge=0.0, allow_inf_nan=False, description="the job's throughput (all ranks)"
    )
    world_size: int = Field(default=0, ge=0, le=MAX_COUNT, description="ranks in the running generation")
    metrics: Metrics = Field(default_factory=dict, max_length=64)
    last_checkpoint_step: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    failure_cause: str | None = Field(default=None, max_length=2048)
    remaining_samples: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COUNT,
        description="samples the training still has to process, when it knows (epochs left x dataset size): the "
        "operator does not rescale a job that would finish before the rescale pays off",
    )
    pause_s: float | None = Field(
        default=None,
        ge=0.0,
        allow_inf_nan=False,
        description="seconds this pod's training stood still before the current generation ran (stop, checkpoint, "
        "restart, rendezvous); None for a pod that had not trained before",
    )
    timestamp: float = Field(
        default_factory=time.time, allow_inf_nan=False, description="unix time the launcher built this report"
    )

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if not math.isfinite(x)]
        if bad:
            raise ValueError(f"metrics must be finite: {', '.join(sorted(bad))}")
        return v


class Directive(BaseModel):
    """The operator's answer to a report: what this pod should do now.

    * ``run``: take part in ``generation`` with ``nnodes`` pods (torchrun ``--nnodes=N:N``, ``--rdzv-id=rdzv_id``,
      ``--rdzv-endpoint=rdzv_endpoint``). A running launcher that sees a higher generation checkpoints and restarts.
    * ``checkpoint-and-wait``: stop training after a checkpoint (if running) and wait.
    * ``exit``: stop after a checkpoint (if running), report ``exited`` and leave with success.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)  # ignore: newer operators may add fields

    generation: int = Field(ge=0)
    action: Action
    nnodes: int = Field(default=0, ge=0)
    rdzv_endpoint: str = Field(default="", description="host:port of the job's rendezvous server; '' = none yet")
    rdzv_id: str = Field(default="", description="<job uid>-g<generation>; derived by the launcher if empty")
    members: list[str] = Field(default_factory=list, description="pods taking part in the generation (optional)")

    def rendezvous_id(self, job_uid: str) -> str:
        return self.rdzv_id or f"{job_uid}-g{self.generation}"

    @property
    def runnable(self) -> bool:
        return self.action == Action.RUN and self.nnodes > 0 and bool(self.rdzv_endpoint)


class Progress(BaseModel):
    """What the local rank 0 writes to ``$ELASTIC_CONTROL_DIR/progress.json`` for its launcher."""

    model_config = ConfigDict(extra="ignore")

    generation: int = 0
    step: int = 0
    epoch: int = 0
    samples_per_s: float = 0.0
    world_size: int = 0
    metrics: Metrics = Field(default_factory=dict)
    last_checkpoint_step: int | None = None
    remaining_samples: int | None = None
    timestamp: float = 0.0
