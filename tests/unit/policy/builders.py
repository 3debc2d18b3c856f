"""Small builders that keep policy tests readable: `node("n1", gpus=4)`, `job("a", min=2, max=4, running_on=[...])`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from elastic_operator.policy import (
    GPU,
    Job,
    Node,
    Phase,
    Resources,
    Settings,
    Snapshot,
    Taint,
    Toleration,
    Worker,
)

NOW = 10_000.0


def node(
    name: str,
    *,
    gpus: int = 4,
    cpu: int = 32_000,
    labels: Mapping[str, str] | None = None,
    taints: Iterable[Taint] = (),
    schedulable: bool = True,
    ready: bool = True,
) -> Node:
    return Node(
        name,
        Resources.of(cpu=cpu, gpus=gpus),
        labels=dict(labels or {}),
        taints=tuple(taints),
        schedulable=schedulable,
        ready=ready,
    )


def job(
    name: str,
    *,
    min: int = 1,  # shadows the builtin on purpose: reads like the spec
    max: int | None = None,
    gpus: int = 1,
    cpu: int = 0,
    priority: int = 0,
    created: float = 0.0,
    running_on: Iterable[str] | None = None,
    selector: Mapping[str, str] | None = None,
    tolerations: Iterable[Toleration] = (),
    last_rescale: float | None = None,
    cooldown: float | None = None,
    may_shrink: bool = True,
    may_requeue: bool = True,
    throughput: Mapping[int, float] | Mapping[tuple[int, int], float] | None = None,
    busy: bool = False,
    phase: Phase | None = None,
    **extra: Any,
) -> Job:
    nodes = list(running_on) if running_on is not None else None
    workers = tuple(Worker(i, n) for i, n in enumerate(nodes or []))
    return Job(
        key=name if "/" in name else f"ns/{name}",
        per_worker=Resources.of(cpu=cpu, gpus=gpus),
        min_workers=min,
        max_workers=min if max is None else max,
        priority=priority,
        created=created,
        phase=phase or (Phase.RUNNING if nodes is not None else Phase.QUEUED),
        node_selector=dict(selector or {}),
        tolerations=tuple(tolerations),
        workers=workers,
        last_rescale=last_rescale,
        cooldown_s=cooldown,
        may_shrink=may_shrink,
        may_requeue=may_requeue,
        throughput=placed(throughput or {}),
        busy=busy,
        **extra,
    )


def placed(throughput: Mapping[int, float] | Mapping[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    """Measurements by (workers, nodes): an int key n means n workers measured on one node (most tests' jobs run on
    one node); (n, k) keys are taken as they are."""
    out: dict[tuple[int, int], float] = {}
    for key, value in throughput.items():
        out[(key, 1) if isinstance(key, int) else key] = value
    return out


def snap(
    nodes: Iterable[Node],
    jobs: Iterable[Job],
    usage: Mapping[str, Mapping[str, int]] | None = None,
    **settings: Any,
) -> Snapshot:
    base = {"grow": False, "aging_per_hour": 0.0}  # rules are tested one at a time; grow tests turn it on
    base.update(settings)
    return Snapshot(
        nodes=tuple(nodes),
        jobs=tuple(jobs),
        foreign_usage={k: Resources(v) for k, v in (usage or {}).items()},
        settings=Settings(**base),
    )


def gpus(n: int) -> dict[str, int]:
    return {GPU: n}
