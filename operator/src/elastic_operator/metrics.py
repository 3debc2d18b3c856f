"""Every Prometheus metric the operator exports. Names are the contract: elastic_training_*."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "elastic_training"


class OperatorMetrics:
    """One registry per operator instance (tests run several in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "TrainingJobs waiting for admission.", registry=r)
        self.jobs = Gauge(f"{PREFIX}_jobs", "TrainingJobs by phase.", ["phase"], registry=r)
        self.workers_allocated = Gauge(
            f"{PREFIX}_workers_allocated", "Resources held by training workers.", ["resource"], registry=r
        )
        self.capacity = Gauge(
            f"{PREFIX}_capacity",
            "Allocatable resources of the nodes the operator may use.",
            ["resource"],
            registry=r,
        )
        self.rescales = Counter(
            f"{PREFIX}_rescales",
            "Rescales applied, by direction and reason.",
            ["direction", "reason"],
            registry=r,
        )
        self.rescale_pause = Histogram(
            f"{PREFIX}_rescale_pause_seconds",
            "How long training stood still per rescale (stop, checkpoint, restart, rendezvous).",
            buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
            registry=r,
        )
        self.restarts = Counter(f"{PREFIX}_restarts", "Job restarts by cause.", ["cause"], registry=r)
        self.plan_duration = Histogram(
            f"{PREFIX}_plan_duration_seconds",
            "Time to build a snapshot and run policy.plan().",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=r,
        )
        self.round_duration = Histogram(
            f"{PREFIX}_round_duration_seconds",
            "Time of one whole planning round: snapshot, plan(), and every API write it leads to.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.api_requests = Counter(
            f"{PREFIX}_api_requests",
            "Requests the operator's own client sent to the API server (kopf's watch streams aside), by method "
            "and resource.",
            ["method", "resource"],
            registry=r,
        )
        self.apply_errors = Counter(
            f"{PREFIX}_apply_errors", "Failed API writes while applying decisions.", ["kind"], registry=r
        )
        self.report_latency = Histogram(
            f"{PREFIX}_report_latency_seconds",
            "Time to handle one trainer report.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.reports = Counter(f"{PREFIX}_reports", "Trainer reports by outcome.", ["outcome"], registry=r)
        self.decisions = Counter(f"{PREFIX}_decisions", "Scheduling decisions by action.", ["action"], registry=r)
