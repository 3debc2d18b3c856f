"""Build the policy's frozen snapshot from the watched view, run plan(), and translate its decisions.

Capacity accounting matches the scheduler's: every bound, unfinished pod holds its requests. Pods of our jobs are
represented as the jobs' workers (placed or leaving); every other pod on an eligible node is foreign usage —
including our rendezvous pods and any stray worker pod still terminating, so nothing is ever over-committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from elastic_operator.config import OperatorSettings
from elastic_operator.k8s.facts import node_ready, pod_holds_resources, pod_requests
from elastic_operator.k8s.jobs import JobContext
from elastic_operator.k8s.view import ClusterView, Key
from elastic_operator.lifecycle.state import QUEUED, RESCALING, RUNNING, STARTING, TERMINAL, JobRuntime
from elastic_operator.lifecycle.step import Change
from elastic_operator.policy.decision import Action, Decision
from elastic_operator.policy.plan import plan
from elastic_operator.policy.resources import Resources, parse_quantity
from elastic_operator.policy.snapshot import Job, Node, Phase, Settings, Snapshot, Taint, Toleration, Worker
from elastic_operator.render.names import JOB_LABEL, SLOT_LABEL

JSON = dict[str, Any]


@dataclass(frozen=True)
class PlannedChange:
    change: Change
    summary: JSON  # what goes into status.lastDecision
    reason_code: str


@dataclass
class Throughputs:
    """Measured samples/s by placement (workers, nodes they span), per job, learned from reports (the goodput
    mode's input). By placement because the same worker count can run at half the speed spread over two nodes
    (policy/throughput.py): keyed by worker count alone, one placement's reports overwrote the other's."""

    by_job: dict[Key, dict[tuple[int, int], float]] = field(default_factory=dict)

    def record(self, job: Key, workers: int, nodes: int, samples_per_s: float) -> None:
        if workers > 0 and nodes > 0 and samples_per_s > 0:
            curve = self.by_job.setdefault(job, {})
            old = curve.get((workers, nodes))
            curve[(workers, nodes)] = samples_per_s if old is None else 0.7 * old + 0.3 * samples_per_s


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else 0.0


def _selector(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, _, v = part.partition("=")
        out[k.strip()] = v.strip()
    return out


_parsed_resources: dict[tuple[tuple[str, str], ...], Resources] = {}


# Every pod takes one of its node's pod slots (allocatable `pods`, 110 by default), as the scheduler counts them:
# a worker placed on a node whose slots are full stays Pending ("Too many pods"; bench/scale, where 1,000 small
# rendezvous pods filled a few nodes). A node that reports no limit gets one nothing reaches.
PODS = "pods"
UNLIMITED_PODS = "1000000"


def _resources(raw: Mapping[str, Any]) -> Resources:
    """Memoised by content: 1,000 nodes' allocatable and 2,000 jobs' requests are a handful of distinct maps, and
    parsing quantities (exact fractions) every round was a third of a quiet round at that size (bench/scale)."""
    key = tuple((k, str(v)) for k, v in raw.items())
    found = _parsed_resources.get(key)
    if found is None:
        if len(_parsed_resources) >= 10_000:
            _parsed_resources.clear()  # bounded; a rebuild costs one round's parsing
        found = _parsed_resources[key] = Resources({k: parse_quantity(k, v) for k, v in key})
    return found


# node name -> (the node object, the selector, its policy Node or None when not eligible); see build_nodes
_node_memo: dict[str, tuple[JSON, str, Node | None]] = {}


def build_nodes(view: ClusterView, settings: OperatorSettings) -> tuple[Node, ...]:
    """The eligible nodes, each rebuilt only when the view holds another object for it (the view never edits one
    in place): 1,000 nodes parsed every round were a twentieth of the operator's CPU in bench/scale."""
    nodes = []
    seen = set()
    for name, obj in sorted(view.nodes.items()):
        seen.add(name)
        found = _node_memo.get(name)
        if found is None or found[0] is not obj or found[1] != settings.node_selector:
            found = _node_memo[name] = (obj, settings.node_selector, _node(name, obj, settings.node_selector))
        if found[2] is not None:
            nodes.append(found[2])
    if len(_node_memo) > len(seen):
        for gone in [n for n in _node_memo if n not in seen]:
            del _node_memo[gone]
    return tuple(nodes)


def _node(name: str, obj: JSON, selector: str) -> Node | None:
    wanted = _selector(selector)
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()) or obj["metadata"].get("deletionTimestamp"):
        return None
    spec = obj.get("spec") or {}
    return Node(
        name=name,
        allocatable=_resources({PODS: UNLIMITED_PODS, **((obj.get("status") or {}).get("allocatable") or {})}),
        labels=dict(labels),
        taints=tuple(
            Taint(t.get("key", ""), t.get("value", "") or "", t.get("effect", "NoSchedule"))
            for t in spec.get("taints") or []
        ),
        schedulable=not spec.get("unschedulable", False),
        ready=node_ready(obj),
    )


def _toleration(t: Mapping[str, Any]) -> Toleration:
    return Toleration(
        key=t.get("key") or "",
        operator=t.get("operator") or "Equal",
        value=t.get("value") or "",
        effect=t.get("effect") or "",
    )


def _remaining(obj: JSON) -> float | None:
    progress = ((obj.get("status") or {}) if isinstance(obj.get("status"), dict) else {}).get("progress")
    value = progress.get("remainingSamples") if isinstance(progress, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None


def _slot(pod: JSON) -> int | None:
    value = (pod["metadata"].get("labels") or {}).get(SLOT_LABEL)
    return int(value) if value is not None and str(value).isdigit() else None


def _policy_job(
    key: Key,
    ctx: JobContext,
    rt: JobRuntime,
    pods: list[JSON],
    throughput: Mapping[tuple[int, int], float],
    now: float,
) -> Job:
    node_of_slot = {slot: (p.get("spec") or {}).get("nodeName") or "" for p in pods if (slot := _slot(p)) is not None}
    phase = Phase.OTHER
    busy = False
    finished = bool(rt.members) and rt.phase not in TERMINAL
    phase_of_slot = {slot: (p.get("status") or {}).get("phase") for p in pods if (slot := _slot(p)) is not None}
    finished = finished and all(phase_of_slot.get(slot) == "Succeeded" for slot in rt.members)
    if finished:
        # Every member pod Succeeded: this round's lifecycle step completes the job (lifecycle/step.py, _finished),
        # so its capacity is planned as free now, not one round later (bench/scale: capacity freed -> pods
        # created). Pods of it that still hold resources count as someone else's until they are gone.
        rt = replace(rt, placement=(), leaving=())
    elif rt.phase == QUEUED:
        phase, busy = (Phase.QUEUED, False) if not rt.leaving else (Phase.OTHER, True)
    elif rt.phase == RUNNING:
        phase, busy = Phase.RUNNING, bool(rt.leaving)
    elif rt.phase in (STARTING, RESCALING):
        phase, busy = Phase.RUNNING, True
    requeued = rt.rescales.get("requeue", 0) or rt.restarts.get("workerLost", 0) or rt.restarts.get("workerFailed", 0)
    return Job(
        key=f"{key[0]}/{key[1]}",
        per_worker=_resources({**ctx.requests, PODS: "1"}),
        min_workers=ctx.facts.min_workers,
        max_workers=ctx.facts.max_workers,
        priority=ctx.priority,
        created=_ts(ctx.obj["metadata"].get("creationTimestamp")),
        phase=phase,
        node_selector=dict(ctx.template.node_selector),
        tolerations=tuple(_toleration(t) for t in ctx.template.tolerations),
        workers=tuple(Worker(s.slot, s.node) for s in rt.placement),
        leaving=tuple(Worker(x.slot, node_of_slot.get(x.slot, "")) for x in rt.leaving if node_of_slot.get(x.slot)),
        last_rescale=rt.last_rescale_time or rt.start_time,
        cooldown_s=ctx.cooldown_s,
        may_shrink=ctx.may_shrink,
        may_requeue=ctx.may_requeue,
        throughput=dict(throughput),
        queued_since=rt.last_rescale_time if (rt.phase == QUEUED and requeued) else None,
        busy=busy,
        attained_s=rt.attained(now),
        rescale_pause_s=rt.last_rescale_pause_s,
        remaining_samples=_remaining(ctx.obj),
    )


@dataclass
class _JobMemo:
    """What a policy Job was built from, compared by identity: the view replaces objects and never edits them in
    place, parse_job and StatusDerived hand out the same objects while nothing changed (k8s/jobs.py,
    k8s/derived.py), and the memo holds them, so an id cannot be reused while it is kept."""

    facts: object
    template: object
    runtime: JobRuntime
    status: Any
    pods: list[JSON]
    throughput: dict[tuple[int, int], float]
    job: Job


_job_memo: dict[Key, _JobMemo] = {}


def _memo_job(
    key: Key,
    ctx: JobContext,
    rt: JobRuntime,
    pods: list[JSON],
    throughput: Mapping[tuple[int, int], float],
    now: float,
) -> Job:
    """`_policy_job`, rebuilt only when one of its inputs is another object (its attained service, which moves with
    the clock, is recomputed every round). Building 2,000 jobs every round was a fifth of the operator's CPU in
    bench/scale, where most jobs do not change from one round to the next."""
    status = ctx.obj.get("status")
    m = _job_memo.get(key)
    if (
        m is not None
        and m.facts is ctx.facts
        and m.template is ctx.template
        and m.runtime is rt
        and m.status is status
        and len(m.pods) == len(pods)
        and all(a is b for a, b in zip(m.pods, pods, strict=True))
        and m.throughput == throughput
    ):
        attained = rt.attained(now)
        return m.job if m.job.attained_s == attained else _with_attained(m.job, attained)
    job = _policy_job(key, ctx, rt, pods, throughput, now)
    _job_memo[key] = _JobMemo(ctx.facts, ctx.template, rt, status, list(pods), dict(throughput), job)
    return job


def _with_attained(job: Job, attained_s: float) -> Job:
    """`replace(job, attained_s=...)` without re-running the dataclass __init__ over every field: for every running
    job in every round, that was most of what the memo saved (bench/scale)."""
    out = object.__new__(Job)
    out.__dict__.update(job.__dict__)
    object.__setattr__(out, "attained_s", attained_s)
    return out


def forget_jobs(keep: set[Key]) -> None:
    """Drop the memo of jobs no longer planned."""
    for key in [k for k in _job_memo if k not in keep]:
        del _job_memo[key]


@dataclass(frozen=True)
class _PodUsage:
    node: str
    requests: Mapping[str, int]
    job: str  # the job label ("" if none)
    slot: int | None  # the worker slot label of a job's pod


# pod key -> (the pod object, what it holds or None); rebuilt from the view every round, so it holds nothing the
# view does not
_pod_memo: dict[tuple[str, str], tuple[JSON, _PodUsage | None]] = {}


def _pod_usage(pod: JSON) -> _PodUsage | None:
    """What a pod holds (None: nothing, it is unbound or finished)."""
    if not pod_holds_resources(pod):
        return None
    labels = pod["metadata"].get("labels") or {}
    return _PodUsage(
        node=str((pod.get("spec") or {}).get("nodeName")),
        requests={k: int(v) for k, v in pod_requests(pod).items()},
        job=str(labels.get(JOB_LABEL, "")),
        slot=_slot(pod) if JOB_LABEL in labels else None,
    )


def build_snapshot(
    view: ClusterView,
    contexts: Mapping[Key, JobContext],
    runtimes: Mapping[Key, JobRuntime],
    pods_by_job: Mapping[Key, list[JSON]],
    settings: OperatorSettings,
    throughputs: Throughputs,
    now: float,
) -> Snapshot:
    nodes = build_nodes(view, settings)
    node_names = {n.name for n in nodes}
    jobs = tuple(
        _memo_job(key, ctx, runtimes[key], pods_by_job.get(key, []), throughputs.by_job.get(key, {}), now)
        for key, ctx in sorted(contexts.items())
    )
    represented: set[tuple[str, str, int]] = set()  # (namespace, job, slot) counted as a job's worker
    for job in jobs:
        ns, name = job.key.split("/", 1)
        represented.update((ns, name, w.slot) for w in (*job.workers, *job.leaving))
    # Each pod's usage is computed once per pod object (the view replaces objects, never edits them): every round
    # reads every pod, thousands at bench/scale's size, most of them unchanged since the round before.
    memo: dict[tuple[str, str], tuple[JSON, _PodUsage | None]] = {}
    foreign: dict[str, dict[str, int]] = {}
    for pod_key, pod in view.pods.items():
        ns = pod_key[0]
        found = _pod_memo.get(pod_key)
        if found is None or found[0] is not pod:
            found = (pod, _pod_usage(pod))
        memo[pod_key] = found
        usage_of = found[1]
        if usage_of is None or usage_of.node not in node_names:
            continue
        if usage_of.slot is not None and (ns, usage_of.job, usage_of.slot) in represented:
            continue
        usage = foreign.setdefault(usage_of.node, {})
        for k, v in usage_of.requests.items():
            usage[k] = usage.get(k, 0) + v
        usage[PODS] = usage.get(PODS, 0) + 1
    _pod_memo.clear()
    _pod_memo.update(memo)
    return Snapshot(
        nodes=nodes,
        jobs=jobs,
        foreign_usage={n: Resources(u) for n, u in foreign.items()},
        settings=Settings(rescale_pause_s=settings.rescale_pause_s, grow_mode=settings.grow_mode),  # type: ignore[arg-type]
    )


def _summary(d: Decision) -> JSON:
    inputs = dict(d.inputs)
    out: JSON = {"action": str(d.action), "reason": d.reason, "targetWorkers": d.target}
    for src, dst in (("queue_depth", "queueDepth"), ("free_gpus", "freeGPUs"), ("blocking", "blockingCause")):
        if src in inputs:
            out[dst] = inputs.pop(src)
    out["inputs"] = {k: str(v) for k, v in inputs.items()}
    return out


def plan_changes(
    view: ClusterView,
    contexts: Mapping[Key, JobContext],
    runtimes: Mapping[Key, JobRuntime],
    pods_by_job: Mapping[Key, list[JSON]],
    settings: OperatorSettings,
    now: float,
    throughputs: Throughputs,
) -> tuple[dict[Key, PlannedChange], dict[Key, JSON], JSON]:
    """Run the policy once. Returns the changes by job, what to say about each queued job, and gauges."""
    snapshot = build_snapshot(view, contexts, runtimes, pods_by_job, settings, throughputs, now)
    result = plan(snapshot, now)
    changes: dict[Key, PlannedChange] = {}
    queued: dict[Key, JSON] = {}
    entries = {e.job: e for e in result.queue}
    for d in result.decisions:
        ns, name = d.job.split("/", 1)
        key = (ns, name)
        if d.is_change:
            change = Change(str(d.action), d.target, tuple(d.add_nodes), tuple(d.remove_slots), d.reason)
            changes[key] = PlannedChange(change, _summary(d), str(d.action))
        elif d.action is Action.WAIT:
            summary = _summary(d)
            entry = entries.get(d.job)
            if entry is not None:
                summary.update(queuePosition=entry.position, queueDepth=entry.depth)
            queued[key] = summary
    capacity: dict[str, int] = {}
    for n in snapshot.nodes:
        for k, v in n.allocatable.items():
            capacity[k] = capacity.get(k, 0) + v
    allocated: dict[str, int] = {}
    for j in snapshot.jobs:
        for k, v in j.per_worker.items():
            allocated[k] = allocated.get(k, 0) + v * (len(j.workers) + len(j.leaving))
    info = {"queue_depth": len(result.queue), "capacity": capacity, "allocated": allocated}
    return changes, queued, info
