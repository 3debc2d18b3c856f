"""aiohttp app: POST /v1/namespaces/{namespace}/trainingjobs/{name}/reports.

Every request is authenticated with the job's token (reports/tokens.py); a bad or missing token gets 401 at once
and costs no more than an HMAC. A malformed report gets 400 naming the offending fields. A good one is stored
(latest per pod) and answered with the pod's directive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from elastic_operator.lifecycle.step import ReportFacts
from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.tokens import token_matches
from elastic_trainer import contract

JobKey = tuple[str, str]
log = logging.getLogger("elastic_operator.reports")
MAX_BODY = 64 * 1024  # a report is a few hundred bytes; anything larger is refused before parsing


@dataclass(frozen=True)
class StoredReport:
    facts: ReportFacts
    report: contract.Report
    received: float


@dataclass
class ReportStore:
    """Latest report per pod, per job. In memory: a restarted operator hears from every pod within one interval."""

    by_job: dict[JobKey, dict[str, StoredReport]] = field(default_factory=dict)

    def put(self, job: JobKey, pod: str, stored: StoredReport) -> StoredReport | None:
        pods = self.by_job.setdefault(job, {})
        previous = pods.get(pod)
        pods[pod] = stored
        return previous

    def facts(self, job: JobKey) -> dict[str, ReportFacts]:
        return {pod: s.facts for pod, s in self.by_job.get(job, {}).items()}

    def latest(self, job: JobKey) -> Mapping[str, StoredReport]:
        return self.by_job.get(job, {})

    def forget(self, live_jobs: set[JobKey]) -> None:
        for key in list(self.by_job):
            if key not in live_jobs:
                del self.by_job[key]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON, errors included: aiohttp's own 404 (unknown path), 405 (wrong method) and 413 come
    as text otherwise, which a launcher parsing the answer would report as a decode error, not as the problem."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers=_allow(exc))
    except Exception:  # a bug: logged with its traceback, the client gets JSON and the server carries on
        log.exception("report endpoint: unexpected error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


JobUidLookup = Callable[[str, str], str | None]
DirectiveFor = Callable[[str, str, str], contract.Directive]


def build_app(
    store: ReportStore,
    key: bytes,
    job_uid: JobUidLookup,
    directive_for: DirectiveFor,
    metrics: OperatorMetrics,
    on_state_change: Callable[[], None],
    clock: Callable[[], float] = time.time,
) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            return await _handle(request)
        finally:
            metrics.report_latency.observe(time.perf_counter() - started)

    async def _handle(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        auth = request.headers.get("Authorization", "")
        uid = job_uid(ns, name)
        presented = auth[7:] if auth.startswith("Bearer ") else ""
        if uid is None or not presented or not token_matches(key, uid, presented):
            metrics.reports.labels("unauthorized").inc()
            # the same answer for "no such job" and "wrong token": nothing to learn by probing
            return web.json_response({"error": "unauthorized"}, status=401)
        if request.content_length is not None and request.content_length > MAX_BODY:
            metrics.reports.labels("invalid").inc()
            return web.json_response({"error": f"report larger than {MAX_BODY} bytes"}, status=413)
        try:
            raw = await request.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise ValueError(f"report larger than {MAX_BODY} bytes")
            report = contract.Report.model_validate_json(raw)
        except ValidationError as exc:
            metrics.reports.labels("invalid").inc()
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]} for e in exc.errors()
            ]
            return web.json_response({"error": "invalid report", "fields": errors}, status=400)
        except ValueError as exc:
            metrics.reports.labels("invalid").inc()
            return web.json_response({"error": str(exc)}, status=400)
        if report.job != name or report.namespace != ns:
            metrics.reports.labels("invalid").inc()
            return web.json_response({"error": "report names another job than its URL"}, status=400)
        now = clock()
        previous = store.latest((ns, name)).get(report.pod)
        same = previous is not None and (previous.facts.state, previous.facts.generation) == (
            str(report.state),
            report.generation,
        )
        facts = ReportFacts(
            generation=report.generation,
            state=str(report.state),
            time=previous.facts.time if same and previous is not None else now,  # since when it is in this state
            checkpoint_step=report.last_checkpoint_step,
            pause_s=report.pause_s,
        )
        previous = store.put((ns, name), report.pod, StoredReport(facts, report, now))
        metrics.reports.labels("accepted").inc()
        if previous is None or (previous.facts.state, previous.facts.generation) != (facts.state, facts.generation):
            on_state_change()
        directive = directive_for(ns, name, report.pod)
        return web.json_response(directive.model_dump(mode="json"))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
    app.router.add_post(contract.REPORT_ROUTE, handle)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start an app; returns the runner (for cleanup) and the port actually bound (port 0 picks one)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server
    bound = int(server.sockets[0].getsockname()[1]) if server and server.sockets else port
    return runner, bound
