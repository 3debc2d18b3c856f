"""Operator settings, from environment variables (ELASTIC_OPERATOR_*) or CLI flags (see main.py)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything an operator deployment may tune. Every field maps to ELASTIC_OPERATOR_<FIELD> and --<field>."""

    model_config = SettingsConfigDict(env_prefix="ELASTIC_OPERATOR_", frozen=True, extra="forbid")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch for jobs; empty means cluster-wide."
    )
    node_selector: str = Field(
        default="",
        description="Label selector (k=v[,k=v]) of the nodes this operator may place workers on; empty: all nodes.",
    )
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name of accelerators.")
    planner_interval_s: float = Field(default=5.0, gt=0, description="Seconds between periodic planning rounds.")
    planner_debounce_s: float = Field(
        default=0.3, ge=0, description="After a watched change, wait this long for more before planning."
    )
    apply_concurrency: int = Field(
        default=96,
        ge=1,
        description="How many jobs' API writes one planning round issues at once (bounded so a burst of decisions "
        "does not flood the API server; bench-scale: 32 -> 96 took admissions from 18.8 to 22.6 a second).",
    )
    apply_budget_s: float = Field(
        default=3.0,
        gt=0,
        description="Admissions and grows of one planning round not yet started this many seconds after the plan "
        "are left to the next round, which plans them again with fresher facts (a round with hundreds of "
        "admissions on a busy API server otherwise held capacity freed meanwhile for tens of seconds).",
    )
    queue_status_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="How often a queued job's status.lastDecision is rewritten when only its queue position, the "
        "queue depth or the free GPUs moved (one write per queued job each time).",
    )
    queue_status_writes_per_s: float = Field(
        default=10.0,
        gt=0,
        description="At most this many such queue-position rewrites per second over the whole queue: with 1,000 "
        "jobs waiting each one's position is refreshed every 100 s instead of the API server taking 100 writes a "
        "second of news.",
    )
    informational_writes_per_round: int = Field(
        default=100,
        ge=1,
        description="Status writes that only inform (a new job's Queued status, queue positions, progress) one "
        "planning round sends at most; the rest follow in later rounds, so a burst of new jobs never delays "
        "admissions.",
    )
    report_host: str = Field(default="0.0.0.0", description="Address the report endpoint listens on.")
    report_port: int = Field(default=8080, ge=0, le=65535, description="Port of the report endpoint (0: any).")
    report_url: str = Field(
        default="",
        description="URL trainer pods use to reach the report endpoint; empty: http://<report_host>:<report_port>.",
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Port of /metrics (0: any, -1 is invalid).")
    health_port: int = Field(default=8081, ge=0, le=65535, description="Port of the liveness probe (/healthz).")
    rescale_pause_s: float = Field(
        default=5.0,
        ge=0,
        description="Expected pause of one rescale (measured by bench-rescale); used by the policy.",
    )
    grow_mode: str = Field(default="goodput", pattern="^(fair|goodput)$", description="How spare capacity is shared.")
    shrink_deadline_s: float = Field(
        default=60.0,
        gt=0,
        description="How long leaving workers get to report their checkpoint before deletion.",
    )
    start_deadline_s: float = Field(
        default=600.0, gt=0, description="How long a new generation may take to gather all its workers."
    )
    rendezvous_port: int = Field(default=29400, ge=1, le=65535, description="Port of each job's TCPStore server.")
    standalone: bool = Field(default=True, description="Run without kopf peering (one replica).")
