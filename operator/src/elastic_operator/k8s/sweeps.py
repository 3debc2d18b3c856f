"""The TuningSweep controller: for every sweep in the watched view, `sweep.decide()` then the API writes.

Per sweep and round: validate (an invalid spec gets phase Failed and an InvalidSpec condition naming the field,
once per generation and message: no retry storm), collect the trial TrainingJobs (label
`elastic.training/sweep=<name>`), decide, then apply in this order:

1. merge-patch the sweep's status (the trial records are the study: a new trial is recorded before it exists);
2. create new trial TrainingJobs (owner reference to the sweep, labels, params annotation; 409 means it exists);
3. set `elastic.training/stop: <reason>` on trials to stop and move `elastic.training/promising` to the best
   running trial (JSON merge patches of metadata only: the operator never writes a spec);
4. post events (events.k8s.io/v1) about the sweep.

Level-based: every step is derived again next round from the view and the status, so a crash between any two
steps is repaired by the next round. The view may lag behind our own status patch by a watch event; the status
we wrote last is used until the view has caught up (compared by resourceVersion).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from elastic_operator.api.common import API_VERSION
from elastic_operator.api.placeholders import PlaceholderError
from elastic_operator.api.tuningsweep import KIND, TuningSweep, trial_manifest
from elastic_operator.api.validation import validate_tuningsweep
from elastic_operator.k8s.client import MERGE_PATCH, KubeClient
from elastic_operator.k8s.view import ClusterView, Key
from elastic_operator.sweep import PARAMS_ANNOTATION, PROMISING_ANNOTATION, STOP_ANNOTATION, SweepEvent, decide
from elastic_operator.sweep.decide import invalid_status
from elastic_operator.sweep.space import Params, to_text
from elastic_operator.sweep.trials import TrialJob, from_job

log = logging.getLogger("elastic_operator.sweeps")

JSON = dict[str, Any]
ACCOUNTING_INTERVAL_S = 30.0
"""status.gpuHoursUsed alone is written at most this often (other changes write it along)."""


@dataclass
class _Written:
    uid: str
    resource_version: int
    obj: JSON


def _object(value: Any) -> JSON:
    """A status read back from the API server, as an object (anything else, e.g. an older schema's, reads empty)."""
    return value if isinstance(value, dict) else {}


def _rv(obj: JSON) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class SweepController:
    """Runs every TuningSweep in `view` one step per `run_round(now)`. Keeps only caches in memory."""

    def __init__(self, client: KubeClient, view: ClusterView, namespaces: list[str]) -> None:
        self.client = client
        self.view = view
        self.namespaces = list(namespaces)
        self._written: dict[Key, _Written] = {}
        self._accounted: dict[str, float] = {}  # sweep uid -> time GPU use was last added to status
        self._invalid: dict[Key, tuple[int | None, str]] = {}
        self._create_failed: set[tuple[str, int]] = set()  # (sweep uid, trial number) whose job the API rejected

    def managed(self, key: Key) -> bool:
        return not self.namespaces or key[0] in self.namespaces

    async def run_round(self, now: float) -> None:
        seen: set[Key] = set()
        for key, obj in list(self.view.sweeps.items()):
            if not self.managed(key) or (obj.get("metadata") or {}).get("deletionTimestamp"):
                continue
            seen.add(key)
            try:
                await self._reconcile(key, self._fresh(key, obj), now)
            except ApiException as exc:
                log.warning("sweep %s/%s: API error %s %s; retrying next round", *key, exc.status, exc.reason)
            except Exception:  # one broken sweep must not stop the others
                log.exception("sweep %s/%s: round failed; retrying next round", *key)
        for key in set(self._written) - seen:
            del self._written[key]
        for key in set(self._invalid) - seen:
            del self._invalid[key]
        uids = {str((o.get("metadata") or {}).get("uid")) for o in self.view.sweeps.values()}
        for uid in set(self._accounted) - uids:
            del self._accounted[uid]

    def _fresh(self, key: Key, obj: JSON) -> JSON:
        """The view's object, or the one our last status patch returned when the view has not caught up yet."""
        written = self._written.get(key)
        uid = str((obj.get("metadata") or {}).get("uid"))
        if written is None or written.uid != uid:
            return obj
        if _rv(obj) >= written.resource_version:
            del self._written[key]
            return obj
        return written.obj

    async def _reconcile(self, key: Key, obj: JSON, now: float) -> None:
        ns, name = key
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        sweep, issues = validate_tuningsweep(obj)
        if sweep is None or issues:
            await self._mark_invalid(key, obj, issues or [("spec", "invalid")], now)
            return
        self._invalid.pop(key, None)
        jobs = [from_job(j) for j in self.view.trial_jobs(ns, name)]
        since = self._accounted.get(uid)
        plan = decide(sweep, jobs, now, accounted_until=since)
        current = _object(obj.get("status"))
        changed = {k for k, v in plan.status.items() if current.get(k) != v}
        if changed == {"gpuHoursUsed"} and since is not None and now - since < ACCOUNTING_INTERVAL_S:
            pass  # only the GPU-hours moved: write them now and then (our own patch wakes the planner)
        else:
            self._accounted[uid] = now
            if changed:
                stored = await self.client.patch_status(KIND, ns, name, {"status": plan.status})
                self._written[key] = _Written(uid, _rv(stored), stored)
        for new in plan.create:
            await self._create_trial(sweep, new.number, new.params, new.priority, now)
        for stop in plan.stop:
            log.info("stopping trial %s/%s: %s", ns, stop.name, stop.reason)
            await self._annotate(ns, stop.name, {STOP_ANNOTATION: stop.reason})
        await self._promote(ns, plan.promising, jobs, set(plan.priorities))
        for event in plan.events:
            await self._event(ns, name, uid, event, now)

    async def _create_trial(self, sweep: TuningSweep, number: int, params: Params, priority: int, now: float) -> None:
        uid = sweep.metadata.uid or ""
        if (uid, number) in self._create_failed:
            return
        ns, name = sweep.metadata.namespace or "", sweep.metadata.name or ""
        try:
            manifest = trial_manifest(sweep, number, params)
        except (PlaceholderError, ValidationError, ValueError) as exc:
            self._create_failed.add((uid, number))
            message = f"trial {number} cannot be rendered: {exc}"[:1024]
            await self._event(ns, name, uid, SweepEvent("Warning", "TrialRenderFailed", message), now)
            return
        manifest["metadata"]["namespace"] = ns
        manifest["metadata"].setdefault("annotations", {})[PARAMS_ANNOTATION] = json.dumps(
            to_text(params), sort_keys=True
        )
        manifest["spec"]["priority"] = priority
        try:
            if await self.client.create(manifest):
                log.info("created trial %s/%s", ns, manifest["metadata"]["name"])
        except ApiException as exc:
            if exc.status in (400, 403, 422):  # rejected for good (schema, quota): say so once, no retry storm
                self._create_failed.add((uid, number))
                message = f"trial {manifest['metadata']['name']} was rejected: {exc.status} {exc.reason}: "
                message += str(exc.body or "")[:800]
                await self._event(ns, name, uid, SweepEvent("Warning", "TrialCreateFailed", message), now)
                return
            raise

    async def _annotate(self, ns: str, job: str, annotations: dict[str, str | None]) -> None:
        """JSON merge patch of the trial's metadata.annotations (None removes one)."""
        path = self.client.path("TrainingJob", ns, job)
        try:
            await self.client.request(
                "PATCH", path, {"metadata": {"annotations": annotations}}, content_type=MERGE_PATCH
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def _promote(self, ns: str, promising: int | None, jobs: list[TrialJob], alive: set[int]) -> None:
        """Exactly the promising trial carries `elastic.training/promising: "true"`."""
        for job in jobs:
            want = job.number is not None and job.number == promising and job.number in alive and not job.finished
            if want and not job.promising:
                await self._annotate(ns, job.name, {PROMISING_ANNOTATION: "true"})
            elif job.promising and not want and not job.deleting:
                await self._annotate(ns, job.name, {PROMISING_ANNOTATION: None})

    async def _mark_invalid(self, key: Key, obj: JSON, issues: list[tuple[str, str]], now: float) -> None:
        ns, name = key
        meta = obj.get("metadata") or {}
        generation = meta.get("generation")
        patch, event = invalid_status(obj.get("status"), issues, generation, now)
        if self._invalid.get(key) == (generation, event.message):
            return  # reported already: no retry storm
        current = _object(obj.get("status"))
        stored = current.get("conditions")
        conditions = [c for c in stored if isinstance(c, dict)] if isinstance(stored, list) else []
        old = next((c for c in conditions if c.get("type") == "InvalidSpec"), None)
        already = (
            old is not None
            and old.get("status") == "True"
            and old.get("message") == patch["conditions"][-1]["message"]
            and current.get("observedGeneration") == generation
        )
        if not already:
            stored = await self.client.patch_status(KIND, ns, name, {"status": patch})
            self._written[key] = _Written(str(meta.get("uid") or ""), _rv(stored), stored)
            await self._event(ns, name, str(meta.get("uid") or ""), event, now)
        self._invalid[key] = (generation, event.message)

    async def _event(self, ns: str, name: str, uid: str, event: SweepEvent, now: float) -> None:
        body = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": ns},
            "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now)),
            "reportingController": "elastic.training/operator",
            "reportingInstance": "elastic-training-operator",
            "action": event.reason,
            "reason": event.reason,
            "type": event.type,
            "note": event.message[:1024],
            "regarding": {"apiVersion": API_VERSION, "kind": KIND, "name": name, "namespace": ns, "uid": uid},
        }
        try:
            await self.client.post_event(body)
        except ApiException as exc:  # an event is never worth failing a round for
            log.debug("event for sweep %s/%s not posted: %s", ns, name, exc.reason)
