"""Watches: every event of the kinds the planner reasons about is folded into the ClusterView.

These handlers do nothing else (no API calls), so they never fail and kopf never retries them.
"""

from __future__ import annotations

from typing import Any

import kopf

from elastic_operator.handlers.context import OperatorContext
from elastic_operator.k8s.client import GROUP, VERSION


def _ctx(memo: Any) -> OperatorContext:
    ctx: OperatorContext = memo.ctx
    return ctx


@kopf.on.event("", "v1", "nodes")
def node_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _ctx(memo).view.observe("Node", event.get("type"), dict(event["object"]))


@kopf.on.event("", "v1", "pods")
def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _ctx(memo).view.observe("Pod", event.get("type"), dict(event["object"]))


@kopf.on.event(GROUP, VERSION, "trainingjobs")
def job_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _ctx(memo).view.observe("TrainingJob", event.get("type"), dict(event["object"]))


@kopf.on.event(GROUP, VERSION, "tuningsweeps")
def sweep_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    _ctx(memo).view.observe("TuningSweep", event.get("type"), dict(event["object"]))
