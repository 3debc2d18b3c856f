"""The controller: one planning round: view -> snapshot -> policy.plan() -> lifecycle.advance() per job -> API writes.

The round is level-based: it derives everything from the watched view, the reports and each job's status, so
running it twice, or after an operator crash, converges to the same state. The handlers call `run_round()`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from elastic_operator.config import OperatorSettings
from elastic_operator.k8s.client import KubeClient
from elastic_operator.k8s.derived import Derived, StatusDerived, valid_conditions
from elastic_operator.k8s.facts import pod_facts
from elastic_operator.k8s.gate import EXPLAIN, FOLLOW, PLACE, PriorityGate
from elastic_operator.k8s.inflight import InFlight
from elastic_operator.k8s.jobs import JobContext, parse_job
from elastic_operator.k8s.snapshot import Throughputs, forget_jobs, plan_changes
from elastic_operator.k8s.sweeps import SweepController
from elastic_operator.k8s.view import ClusterView, Key
from elastic_operator.k8s.written import WrittenStatus
from elastic_operator.lifecycle.directive import EXIT, WAIT, directive_for
from elastic_operator.lifecycle.state import TERMINAL, JobRuntime, from_status, iso, to_status
from elastic_operator.lifecycle.step import (
    Inputs,
    PodFacts,
    Step,
    Timeouts,
    advance,
    mark_created,
    worker_pod_name,
)
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.render import pods as render
from elastic_operator.render.names import JOB_UID_LABEL
from elastic_operator.reports.progress import durable_checkpoint
from elastic_operator.reports.server import ReportStore
from elastic_operator.reports.tokens import job_token
from elastic_trainer import contract

log = logging.getLogger("elastic_operator.controller")

STARTS = frozenset({"admit", "grow"})  # changes that only add pods: safe to leave to the next round
IDLE_RECONCILE_S = (
    5.0  # a job none of whose inputs moved is still reconciled after 1-2x this (its timers: deadlines, TTL)
)
EVENT_CONCURRENCY = 16  # events in flight at once, off the round's path
EVENT_BACKLOG = 10_000  # events waiting to be posted; more are dropped (and counted), as client-go's recorder does

JSON = dict[str, Any]


@dataclass
class Controller:
    client: KubeClient
    view: ClusterView
    settings: OperatorSettings
    metrics: OperatorMetrics
    reports: ReportStore
    token_key: bytes
    report_url: str
    clock: Callable[[], float] = time.time
    throughputs: Throughputs = field(default_factory=Throughputs)
    sweeps: SweepController | None = None
    _infra_done: set[tuple[Key, str]] = field(default_factory=set)  # (job, uid) whose secret/service exist
    _invalid_seen: dict[Key, str] = field(default_factory=dict)
    written: WrittenStatus = field(default_factory=WrittenStatus)  # our last status per job (k8s/written.py)
    _rolled_back: set[Key] = field(default_factory=set)  # jobs whose status another writer put back: rewrite it
    _queue_written: dict[Key, float] = field(default_factory=dict)  # when a queued job's status was last written
    _queue_interval_s: float = 0.0  # this round's: queue_status_interval_s, longer for a long queue
    _informational_budget: int = 0  # status writes that only inform, left in this round (see run_round)
    _events_due: list[tuple[render.JobRef, Step]] = field(default_factory=list)  # posted at the end of the round
    _event_tasks: set[asyncio.Task[None]] = field(default_factory=set)  # rounds' events still being posted
    _event_backlog: int = 0  # events handed to _event_tasks and not posted yet
    _event_gate: asyncio.Semaphore | None = None
    _status_issues_seen: dict[Key, str] = field(default_factory=dict)
    derived: StatusDerived = field(default_factory=StatusDerived)  # per job, from its status (k8s/derived.py)
    inflight: InFlight = field(default_factory=InFlight)  # jobs whose writes of an earlier round go on (pipelined)
    _follow_waiting: dict[Key, asyncio.Task[None]] = field(default_factory=dict)  # not yet holding a write slot
    _parsed: dict[Key, JobContext] = field(default_factory=dict)  # the context of each job's object last round
    _gate: PriorityGate | None = None  # apply_concurrency, over every round's writes in flight
    _gate_key: tuple[asyncio.AbstractEventLoop, int] | None = None
    _settled: dict[Key, tuple[Any, float]] = field(default_factory=dict)  # inputs of a job's last quiet reconcile, when

    # -- queries used by the report endpoint ---------------------------------------------------------------------

    def job_uid(self, namespace: str, name: str) -> str | None:
        job = self.view.jobs.get((namespace, name))
        return None if job is None else str(job["metadata"]["uid"])

    def directive(self, namespace: str, name: str, pod: str) -> contract.Directive:
        job = self.view.jobs.get((namespace, name))
        if job is not None:
            job, _ = self.written.fresh((namespace, name), job, quiet=True)
        rt = from_status((job or {}).get("status"))
        pod_obj = self.view.pods.get((namespace, pod))
        slot = pod_facts(pod_obj).slot if pod_obj else None
        uid = str((job or {}).get("metadata", {}).get("uid", ""))
        d = directive_for(rt, slot, uid, self.rendezvous_endpoint(namespace, rt.rendezvous_pod))
        if pod_obj is None and d.action == EXIT:
            # A pod the watch has not delivered (yet, or again after a relist) may well be a member: told to exit it
            # would checkpoint and end with exit code 0, which reads as the job's completion. It waits one poll.
            d = replace(d, action=WAIT)
        return contract.Directive(
            generation=d.generation, action=d.action, nnodes=d.nnodes, rdzv_endpoint=d.rdzv_endpoint, rdzv_id=d.rdzv_id
        )

    def rendezvous_port(self, job_uid: str) -> int:
        """Each job's rendezvous server gets its own port (settings.rendezvous_port + a stable offset from the uid):
        harmless where every pod has its own network namespace, and it lets several jobs' rendezvous servers share
        one host (torch's TCPStore listens on every address) on the dev-only process node."""
        return self.settings.rendezvous_port + zlib.crc32(job_uid.encode()) % 2000

    def rendezvous_endpoint(self, namespace: str, pod_name: str) -> str:
        pod = self.view.pods.get((namespace, pod_name)) if pod_name else None
        ip = ((pod or {}).get("status") or {}).get("podIP")
        phase = ((pod or {}).get("status") or {}).get("phase")
        uid = ((pod or {}).get("metadata") or {}).get("labels", {}).get(JOB_UID_LABEL, "")
        return f"{ip}:{self.rendezvous_port(uid)}" if ip and phase == "Running" else ""

    # -- the round -------------------------------------------------------------------------------------------------

    def managed(self, key: Key) -> bool:
        return not self.settings.namespaces or key[0] in self.settings.namespaces

    async def run_round(self, *, pipelined: bool = False) -> None:
        """One round. `pipelined` (the planner loop): return once every job's pods are created and deleted; the
        status writes that follow go on while the next round plans (k8s/inflight.py). Otherwise (tests, tools)
        return when every write of the round is done."""
        now = self.clock()
        if self.sweeps is None:
            self.sweeps = SweepController(self.client, self.view, list(self.settings.namespaces))
        try:  # sweeps first: the trials they create are planned in the same round once the watch delivers them
            await self.sweeps.run_round(now)
        except ApiException as exc:
            self.metrics.apply_errors.labels("sweep").inc()
            log.warning("sweep round failed: %s %s", exc.status, exc.reason)
        started = time.perf_counter()
        contexts: dict[Key, JobContext] = {}
        derived: dict[Key, Derived] = {}
        for key, watched in list(self.view.jobs.items()):
            if not self.managed(key) or watched.get("metadata", {}).get("deletionTimestamp"):
                continue
            obj, rolled_back = self.written.fresh(key, watched)
            if rolled_back:
                self._rolled_back.add(key)
            obj = self.inflight.planned(key, obj)  # a status still being written is the one to plan with
            ctx = self._parsed.get(key)
            if ctx is None or ctx.obj is not obj:  # the same object as last round: the same context
                ctx = self._parsed[key] = parse_job(obj)
            if ctx.errors:
                try:
                    await self._mark_invalid(key, obj, ctx.errors)
                except ApiException as exc:  # said again next round (the job is skipped either way)
                    self.metrics.apply_errors.labels("api").inc()
                    log.warning("marking %s/%s invalid failed: %s %s", *key, exc.status, exc.reason)
                continue
            self._invalid_seen.pop(key, None)
            contexts[key] = ctx
            derived[key] = self.derived.of(key, obj)
        pods_by_job = self.view.pods_by_job()
        runtimes = {key: d.runtime for key, d in derived.items()}
        changes, queue_info, snapshot_info = plan_changes(
            self.view, contexts, runtimes, pods_by_job, self.settings, now, self.throughputs
        )
        planned = time.perf_counter()
        self.metrics.plan_duration.observe(planned - started)
        self._export_gauges(runtimes, snapshot_info)
        self.reports.forget(set(contexts))
        self.written.forget(set(contexts))
        self.derived.forget(set(contexts))
        forget_jobs(set(contexts))
        for gone in set(self._parsed) - set(contexts):
            del self._parsed[gone]
        for gone in set(self._settled) - set(contexts):
            del self._settled[gone]
        # Jobs are independent once planned (capacity a job gives up is counted as used until its pods are gone),
        # so their writes overlap: a round with hundreds of admissions waits for the API server's throughput, not
        # for the sum of its round trips (bench/scale).
        gate = self._apply_gate()
        self._informational_budget = self.settings.informational_writes_per_round
        self._queue_interval_s = max(
            self.settings.queue_status_interval_s, len(queue_info) / self.settings.queue_status_writes_per_s
        )

        budget_ends = time.perf_counter() + self.settings.apply_budget_s
        deferred = 0

        async def reconcile(key: Key, ctx: JobContext, placed: asyncio.Event, inputs: Any) -> None:
            nonlocal deferred
            self._settled.pop(key, None)
            try:
                async with gate.slot(PLACE if key in changes else FOLLOW):
                    if self._follow_waiting.get(key) is asyncio.current_task():
                        del self._follow_waiting[key]  # started: from here on it writes
                    change = changes.get(key)
                    if change is not None and change.change.action in STARTS and time.perf_counter() > budget_ends:
                        deferred += 1  # planned again next round, from fresher facts
                        return
                    settled = await self._reconcile(
                        key,
                        ctx,
                        derived[key],
                        pods_by_job.get(key, []),
                        changes.get(key),
                        queue_info.get(key),
                        now,
                        placed,
                    )
                    if settled and change is None:
                        self._settled[key] = (inputs, now)
            except ApiException as exc:
                self.metrics.apply_errors.labels("api").inc()
                log.warning("reconciling %s/%s failed: %s %s", *key, exc.status, exc.reason)
            except Exception:  # a bug triggered by one job's data must not stop every other job
                self.metrics.apply_errors.labels("job").inc()
                log.exception("reconciling %s/%s failed; retrying next round", *key)
            finally:
                if self._follow_waiting.get(key) is asyncio.current_task():
                    del self._follow_waiting[key]
                placed.set()

        # A pipelined round waits only for the jobs the plan changed (their placement must be in the status the next
        # round plans with). Every other reconcile (Running, Succeeded, cleanup) follows in the background at a lower
        # priority: the next round leaves those jobs alone and plans them from the watched status, which for them
        # says at least as much capacity is held (a job whose workers all finished is planned as free anyway).
        placed_all: list[asyncio.Event] = []
        busy = quiet = following = preempted = 0
        for key, ctx in contexts.items():
            if self.inflight.busy(key):
                waiting = self._follow_waiting.pop(key, None)
                if key not in changes or waiting is None or waiting.done():
                    busy += 1  # its writes from an earlier round go on; this round leaves it alone
                    continue
                # An earlier round's reconcile of this job still waits for a write slot and has written nothing;
                # the plan now changes the job (a queued job's admission, above all): that reconcile gives way,
                # the change's writes what it would have. Left alone, the admission waited behind it, and the
                # capacity planned for the job stayed idle meanwhile (bench/scale's wave).
                waiting.cancel()
                preempted += 1
            inputs = (self._inputs(key, ctx, pods_by_job.get(key, [])), (queue_info.get(key) or {}).get("action"))
            if key not in changes and self._quiet(key, inputs, derived[key].runtime.phase, now):
                quiet += 1
                continue
            placed = asyncio.Event()
            task = asyncio.create_task(reconcile(key, ctx, placed, inputs), name=f"elastic-job {key[1]}")
            self.inflight.start(key, task)
            if key in changes:
                placed_all.append(placed)
            else:
                following += 1
                self._follow_waiting[key] = task
        if pipelined:
            await asyncio.gather(*(p.wait() for p in placed_all))  # the rest follow in the background
        else:
            await self.inflight.settle()
        self._post_events_later()
        if deferred:
            self.view.changed.set()  # the next round follows at once (after the debounce), not at the interval
        if log.isEnabledFor(logging.DEBUG):
            actions: dict[str, int] = {}
            for ch in changes.values():
                actions[ch.change.action] = actions.get(ch.change.action, 0) + 1
            log.debug(
                "round: %d jobs (%d with writes in flight, %d quiet, %d following, %d preempted), changes %s (%d left "
                "to the next round), plan %.3fs, round %.3fs, gate queue %d; queue head: %s",
                len(contexts),
                busy,
                quiet,
                following,
                preempted,
                actions,
                deferred,
                planned - started,
                time.perf_counter() - started,
                gate.waiting,
                next((q.get("reason") for q in queue_info.values() if q.get("queuePosition") == 1), "none"),
            )

    async def _reconcile(
        self,
        key: Key,
        ctx: JobContext,
        derived: Derived,
        raw_pods: list[JSON],
        change: Any,
        queue: JSON | None,
        now: float,
        placed: asyncio.Event | None = None,
    ) -> bool:
        """`placed` is set once the job's pods are created and deleted and the status to write is known (the
        next round may plan then, k8s/inflight.py). Returns whether the job is settled: nothing of this round's
        outcome was left for later (a deferred informational status write is not settled)."""
        ns, name = key
        obj = ctx.obj
        status = _object(obj.get("status"))
        rt = derived.runtime
        await self._say_status_issues(key, obj, derived.issues)
        inputs = Inputs(
            spec=ctx.facts,
            runtime=rt,
            pods=tuple(self._facts(p) for p in raw_pods),
            reports=self.reports.facts(key),
            change=change.change if change is not None else None,
            timeouts=Timeouts(self.settings.shrink_deadline_s, self.settings.start_deadline_s),
        )
        step = advance(inputs, now)
        job = render.JobRef(ns, name, str(obj["metadata"]["uid"]))
        created = await self._apply(job, ctx, step)
        if created:
            step = replace(
                step,
                runtime=mark_created(
                    step.runtime,
                    [s.slot for s in step.create_workers if worker_pod_name(name, s.slot) in created],
                    step.create_rendezvous in created,
                ),
            )
        if step.pause_s is not None:
            self.metrics.rescale_pause.observe(step.pause_s)
        patch = to_status(step.runtime)
        patch["observedGeneration"] = obj["metadata"].get("generation")
        progress = self._progress(key, rt, status.get("progress"))
        if progress is not None:
            patch["progress"] = progress
        if change is not None:
            patch["lastDecision"] = {**change.summary, "time": iso(now)}
            self.metrics.decisions.labels(change.change.action).inc()
            if change.change.action in ("grow", "shrink", "requeue"):
                self.metrics.rescales.labels(change.change.action, change.reason_code).inc()
        elif queue is not None and step.runtime.phase == "Queued":
            patch["lastDecision"] = {**queue, "time": _object(status.get("lastDecision")).get("time") or iso(now)}
        patch["conditions"] = _conditions(derived.conditions, step.runtime.phase, obj, now)
        for cause in ("workerFailed", "workerLost", "rendezvousLost"):
            delta = step.runtime.restarts.get(cause, 0) - rt.restarts.get(cause, 0)
            if delta > 0:
                self.metrics.restarts.labels(cause).inc(delta)
        rewrite = key in self._rolled_back  # another writer put back an older status: ours goes back in
        self._rolled_back.discard(key)
        differs = _differs(status, patch)
        news_only = not rewrite and differs and self._queue_news_only(key, status, patch, now)
        deferred = not rewrite and differs and not news_only and self._informational_deferred(step, rt, change)
        # Settled unless an informational write was put off: it is owed next round. Queue news put off is
        # revisited when due (see _quiet); a write makes a new status the next round sees anyway.
        settled = not deferred
        if rewrite or (differs and not news_only and not deferred):
            if step.runtime.phase == "Queued":
                self._queue_written[key] = now
            self.inflight.intend(key, obj, patch)
            if placed is not None:
                placed.set()
            try:
                stored = await self.client.patch_status("TrainingJob", ns, name, {"status": patch})
                self.written.remember(key, stored)
                # Into the view at once: the next round must not see this job's new pods (another watch stream)
                # with its old status, which would make them strays of a job that placed nothing.
                self.view.observe("TrainingJob", "MODIFIED", stored)
            finally:
                self.inflight.landed(key)
        if step.events:
            self._events_due.append((job, step))
        if step.runtime.phase in TERMINAL:
            await self._ttl(job, obj, step.runtime.completion_time, now)
        return settled

    def _inputs(self, key: Key, ctx: JobContext, pods: list[JSON]) -> Any:
        """What a job's reconcile reads, as versions: its object (status included), its pods, the reports of its
        pods and the node set (a node gone fails the pods on it; nothing else of a node is read here: node status
        changes, which come all the time on a busy cluster, matter to the plan, whose changes bring a job back).
        Equal inputs: the same outcome but for timers."""
        meta = ctx.obj.get("metadata") or {}
        return (
            meta.get("resourceVersion"),
            id(ctx.obj.get("status")),  # a status the controller wrote or is writing, over an older watched object
            tuple(
                ((p.get("metadata") or {}).get("name"), (p.get("metadata") or {}).get("resourceVersion")) for p in pods
            ),
            tuple((pod, r.received) for pod, r in self.reports.latest(key).items()),
            self.view.node_set_revision,
        )

    def _quiet(self, key: Key, inputs: Any, phase: str, now: float) -> bool:
        """Whether this round may leave the job alone: the plan has no change for it, its inputs are those of its
        last reconcile, which left nothing for later, less than IDLE_RECONCILE_S ago (timers: deadlines, backoff,
        TTL), and it is not a queued job whose queue news is due (news of another kind, a new `action`, is a new
        input). At 2,000 jobs, reconciling every job every round
        was half of a round's time, and freed capacity waited for the next round (bench/scale)."""
        settled = self._settled.get(key)
        if settled is None or settled[0] != inputs or now - settled[1] >= idle_reconcile_s(key):
            return False
        if key in self._rolled_back:
            return False
        return phase != "Queued" or now - self._queue_written.get(key, -math.inf) < self._queue_interval_s

    def _informational_deferred(self, step: Step, before: JobRuntime, change: Any) -> bool:
        """Whether to leave this status write for a later round: it only informs (the controller's own state did not
        move, nothing was created or deleted: a new job's first Queued status, a queue position, progress) and this
        round has spent its budget for such writes. A burst of 2,000 new jobs otherwise made one round write 2,000
        statuses before any admission could follow freed capacity (bench/scale)."""
        if change is not None or not step.idle or step.runtime != before:
            return False
        if self._informational_budget <= 0:
            return True
        self._informational_budget -= 1
        return False

    def _queue_news_only(self, key: Key, status: JSON, patch: JSON, now: float) -> bool:
        """A job still waiting in the queue whose only news is why (its position, the job ahead, the free GPUs):
        rewritten at most every queue_status_interval_s, and no more than queue_status_writes_per_s over the whole
        queue. Every admission changes every queued job's explanation: a write per queued job per round made rounds
        grow with the queue, and one every 10 s per job was still 100 writes a second at 1,000 queued (bench/scale),
        most of the API server's work."""
        if patch.get("phase") != "Queued" or _changed_keys(status, patch) != ["lastDecision"]:
            return False
        if _object(status.get("lastDecision")).get("action") != patch["lastDecision"].get("action"):
            return False
        return now - self._queue_written.get(key, 0.0) < self._queue_interval_s

    def _facts(self, pod: JSON) -> PodFacts:
        """A pod bound to a node that no longer exists is lost now, not when the pod GC gets to it (~1 min)."""
        facts = pod_facts(pod)
        if facts.node and facts.node not in self.view.nodes and facts.phase in ("Pending", "Running", "Unknown"):
            return replace(facts, phase="Failed", disrupted=True)
        return facts

    async def _apply(self, job: render.JobRef, ctx: JobContext, step: Step) -> set[str]:
        """The step's creates and deletes, as much at once as order allows: the worker pods go out with the token
        Secret they mount (a kubelet waits for a missing Secret volume; it exists long before any kubelet sees the
        pod), the rendezvous pod only after the NetworkPolicy that protects it. Worker pods, which hold the GPUs,
        are created one round trip after the plan, not two (capacity freed -> pods created, bench/scale); the
        status follows the creates. Returns the names of the pods the API server stored."""
        port = self.rendezvous_port(job.uid)
        infra_key = ((job.namespace, job.name), job.uid)
        infra_new = bool(step.create_workers or step.create_rendezvous) and infra_key not in self._infra_done
        workers = [
            render.worker_pod(
                job, ctx.template, slot.slot, slot.node, worker_pod_name(job.name, slot.slot), self.report_url
            )
            for slot in step.create_workers
        ]

        async def rendezvous() -> JSON | None:
            if infra_new:
                await self.client.create(render.rendezvous_network_policy(job, port))
            if not step.create_rendezvous:
                return None
            return await self.client.create(render.rendezvous_pod(job, ctx.template, step.create_rendezvous, port))

        async def secret() -> None:
            if infra_new:
                await self.client.create(render.token_secret(job, job_token(self.token_key, job.uid)))

        results = await asyncio.gather(
            rendezvous(), secret(), *(self.client.create(pod) for pod in workers), return_exceptions=True
        )
        created: set[str] = set()
        for pod in [results[0], *results[2:]]:
            if isinstance(pod, dict):  # into the view at once: the next round must not create it again (409) or wait
                self.view.observe("Pod", "ADDED", pod)
                created.add(pod["metadata"]["name"])
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed  # what was stored is in the view; the next round plans from it
        if infra_new:
            self._infra_done.add(infra_key)
        for pod_name, why in step.delete_pods:
            log.info("deleting pod %s/%s: %s", job.namespace, pod_name, why)
        await asyncio.gather(*(self.client.delete("Pod", job.namespace, name) for name, _ in step.delete_pods))
        return created

    def _post_events_later(self) -> None:
        """The round's events, posted in the background: an event only explains, the status is what admits (and
        what users wait on), so neither this round's admissions nor the next round wait behind an event. At 1,000
        jobs a round, awaiting them took one more API round trip per round on a busy API server, and freed capacity
        waited for it (bench/scale). At most EVENT_BACKLOG wait; beyond that they are dropped and counted (kind
        "event"), as client-go's event recorder drops when its queue is full."""
        due, self._events_due = self._events_due, []
        events = [(job, e) for job, step in due for e in step.events]
        room = max(0, EVENT_BACKLOG - self._event_backlog)
        if len(events) > room:
            self.metrics.apply_errors.labels("event").inc(len(events) - room)
            log.warning("event backlog full: %d events not posted", len(events) - room)
            events = events[:room]
        if not events:
            return
        if self._event_gate is None or not self._event_tasks:  # none in flight: safe to renew (a new event loop)
            self._event_gate = asyncio.Semaphore(EVENT_CONCURRENCY)
        gate = self._event_gate
        self._event_backlog += len(events)

        apply_gate = self._apply_gate()

        async def post(job: render.JobRef, e: Any) -> None:
            try:
                async with gate, apply_gate.slot(EXPLAIN):  # after the writes that place or follow
                    await self._event(job, e.type, e.reason, e.message)
            except Exception as exc:  # a connection error must not surface as a lost task's traceback
                self.metrics.apply_errors.labels("event").inc()
                log.debug("event for %s/%s not posted: %r", job.namespace, job.name, exc)
            finally:
                self._event_backlog -= 1

        async def post_all() -> None:
            await asyncio.gather(*(post(job, e) for job, e in events))

        task = asyncio.create_task(post_all(), name="elastic-events")
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def drain_events(self) -> None:
        """Wait until every event handed over so far is posted (tests; shutdown with a deadline)."""
        while self._event_tasks:
            await asyncio.gather(*list(self._event_tasks), return_exceptions=True)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Finish the writes in flight and post what is pending for up to timeout_s, then give up on the rest (the
        operator is stopping; a restarted one continues from what the API server holds)."""

        async def finish() -> None:
            await self.inflight.settle()
            self._post_events_later()
            await self.drain_events()

        try:
            await asyncio.wait_for(finish(), timeout_s)
        except TimeoutError:
            for task in [*self.inflight.tasks(), *self._event_tasks]:
                task.cancel()

    def _apply_gate(self) -> PriorityGate:
        """One gate over every round's writes in flight: a pipelined round's admissions, the writes that follow
        earlier rounds and the events share apply_concurrency, admissions first (k8s/gate.py). (A new one for a new
        event loop or size: tests run rounds in separate loops.)"""
        key = (asyncio.get_running_loop(), self.settings.apply_concurrency)
        if self._gate is None or self._gate_key != key:
            self._gate, self._gate_key = PriorityGate(self.settings.apply_concurrency), key
        return self._gate

    async def _event(self, job: render.JobRef, type_: str, reason: str, message: str) -> None:
        now = self.clock()
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{job.name}.{uuid.uuid4().hex[:12]}", "namespace": job.namespace},
            "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now)),
            "reportingController": "elastic.training/operator",
            "reportingInstance": "elastic-training-operator",
            "action": reason,
            "reason": reason,
            "type": type_,
            "note": message[:1024],
            "regarding": {
                "apiVersion": job.api_version,
                "kind": job.kind,
                "name": job.name,
                "namespace": job.namespace,
                "uid": job.uid,
            },
        }
        try:
            await self.client.post_event(body)
        except ApiException as exc:  # an event is never worth failing a decision for
            self.metrics.apply_errors.labels("event").inc()
            log.debug("event for %s/%s not posted: %s", job.namespace, job.name, exc.reason)

    async def _say_status_issues(self, key: Key, obj: JSON, issues: tuple[tuple[str, str], ...]) -> None:
        """A status field that does not parse (an older operator, a second writer) was read as its default; say
        which, once per job and message: the status patch that follows rewrites the fields the controller owns."""
        if not issues:
            self._status_issues_seen.pop(key, None)
            return
        message = "; ".join(f"{path}: {msg}" for path, msg in issues)[:2000]
        if self._status_issues_seen.get(key) == message:
            return
        self._status_issues_seen[key] = message
        log.warning("%s/%s: status fields ignored (defaults used): %s", *key, message)
        job = render.JobRef(key[0], key[1], str(obj["metadata"]["uid"]))
        await self._event(job, "Warning", "InvalidStatus", f"status fields ignored (defaults used): {message}")

    async def _mark_invalid(self, key: Key, obj: JSON, errors: list[tuple[str, str]]) -> None:
        """Phase Failed, an InvalidSpec condition naming every offending field, and a Warning event: written once
        per job and message (the watch event of our own patch must not write it again: no retry storm)."""
        message = "; ".join(f"{path}: {msg}" for path, msg in errors)[:2000]
        if self._invalid_seen.get(key) == message:
            return  # reported already: no retry storm
        ns, name = key
        job = render.JobRef(ns, name, str(obj["metadata"]["uid"]))
        now = self.clock()
        status = _object(obj.get("status"))
        conditions = [c for c in valid_conditions(status.get("conditions")) if c.get("type") != "InvalidSpec"]
        conditions.append(
            {
                "type": "InvalidSpec",
                "status": "True",
                "reason": "InvalidSpec",
                "message": message,
                "lastTransitionTime": iso(now),
                "observedGeneration": obj["metadata"].get("generation"),
            }
        )
        patch = {"status": {"phase": "Failed", "message": f"invalid spec: {message}", "conditions": conditions}}
        await self.client.patch_status("TrainingJob", ns, name, patch)
        self._invalid_seen[key] = message  # after the write: a failed write is tried again next round
        await self._event(job, "Warning", "InvalidSpec", message)

    async def _ttl(self, job: render.JobRef, obj: JSON, completion: float | None, now: float) -> None:
        ttl = (obj.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None or completion is None or now - completion < float(ttl):
            return
        await self.client.delete("TrainingJob", job.namespace, job.name)

    def _progress(self, key: Key, rt: JobRuntime, previous: Any) -> JSON | None:
        latest = self.reports.latest(key)
        if not latest:
            return None
        best = max(latest.values(), key=lambda s: (s.report.step, s.received))
        r = best.report
        current = [
            s for s in latest.values() if s.report.generation == rt.rescale_generation and s.report.state == "running"
        ]
        # every rank-0 launcher reports the job's throughput; members agree, so take the freshest
        freshest = max(current, key=lambda s: s.received) if current else None
        sps = freshest.report.samples_per_s if freshest is not None else 0.0
        # learn the curve only from steady state: the first seconds of a generation (process start, first
        # collectives, cold caches) would make every larger size look slower than it is
        if freshest is not None and sps and rt.phase == "Running" and freshest.received - freshest.facts.time >= 3.0:
            nodes = {rt.node_of(m) for m in rt.members}  # the placement the report was measured on
            self.throughputs.record(key, len(rt.members), len(nodes - {None, ""}), sps)
        checkpoint = durable_checkpoint(latest.values(), previous)  # never shown going back (reports/progress.py)
        return {
            "step": max(r.step, checkpoint or 0),
            "epoch": r.epoch,
            "samplesPerSecond": round(sps, 3),
            "metrics": {k: float(v) for k, v in r.metrics.items()},
            "lastCheckpointStep": checkpoint,
            "lastReportTime": iso(best.received),
            "remainingSamples": r.remaining_samples,
        }

    def _export_gauges(self, runtimes: dict[Key, JobRuntime], info: JSON) -> None:
        phases: dict[str, int] = {}
        for rt in runtimes.values():
            phases[rt.phase] = phases.get(rt.phase, 0) + 1
        for phase in ("Queued", "Starting", "Running", "Rescaling", "Succeeded", "Failed", "Suspended"):
            self.metrics.jobs.labels(phase).set(phases.get(phase, 0))
        self.metrics.queue_depth.set(info.get("queue_depth", 0))
        for resource, value in (info.get("capacity") or {}).items():
            self.metrics.capacity.labels(resource).set(value)
        for resource, value in (info.get("allocated") or {}).items():
            self.metrics.workers_allocated.labels(resource).set(value)


def idle_reconcile_s(key: Key) -> float:
    """IDLE_RECONCILE_S to twice that, fixed per job: jobs that settled together (a burst's admissions) do not all
    come due in the same round."""
    return IDLE_RECONCILE_S * (1.0 + zlib.crc32(f"{key[0]}/{key[1]}".encode()) % 1000 / 1000)


def _object(value: Any) -> JSON:
    """A status (or part of one) as an object: anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def _conditions(existing: tuple[JSON, ...], phase: str, obj: JSON, now: float) -> list[JSON]:
    """Kubernetes-style conditions derived from the phase: Admitted, Running, Succeeded, Failed (+ no InvalidSpec)."""
    wanted = {
        "Admitted": phase not in ("Queued", "Suspended"),
        "Running": phase == "Running",
        "Rescaling": phase == "Rescaling",
        "Suspended": phase == "Suspended",
        "Succeeded": phase == "Succeeded",
        "Failed": phase == "Failed",
    }
    by_type = {c.get("type"): c for c in existing if c.get("type") != "InvalidSpec"}
    out: list[JSON] = []
    for ctype, truth in wanted.items():
        status = "True" if truth else "False"
        old = by_type.get(ctype)
        if old is not None and old.get("status") == status:
            out.append(old)
            continue
        out.append(
            {
                "type": ctype,
                "status": status,
                "reason": phase,
                "message": f"phase is {phase}",
                "lastTransitionTime": iso(now),
                "observedGeneration": obj["metadata"].get("generation"),
            }
        )
    return out


def _differs(status: JSON, patch: JSON) -> bool:
    return bool(_changed_keys(status, patch))


def _changed_keys(status: JSON, patch: JSON) -> list[str]:
    """The keys a merge patch would change. null deletes, so a None in the patch equals an absent field (else a
    nested None, like controller.generationStarted of a queued job, made every round write every job again)."""
    return [k for k, v in patch.items() if v != status.get(k) and _without_nulls(status.get(k)) != _without_nulls(v)]


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
