"""What the handlers share, kept in kopf's memo: one per operator process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.k8s.view import ClusterView
from elastic_operator.metrics import OperatorMetrics


@dataclass
class OperatorContext:
    settings: OperatorSettings
    token_key: bytes
    view: ClusterView = field(default_factory=ClusterView)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    cleanups: list[Any] = field(default_factory=list)
    report_port: int = 0
    metrics_port: int = 0
