"""Operator start-up and shutdown: kopf settings, the report and metrics endpoints, the planner loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from elastic_operator.controller import Controller
from elastic_operator.handlers.context import OperatorContext
from elastic_operator.k8s.client import KubeClient
from elastic_operator.k8s.sync import list_foreign_pods, resync_own_pods
from elastic_operator.k8s.watch import informers
from elastic_operator.reports.server import ReportStore, build_app, serve

log = logging.getLogger("elastic_operator")


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ctx: OperatorContext = memo.ctx
    cfg = ctx.settings
    settings.peering.standalone = cfg.standalone
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    settings.scanning.disabled = True  # no CRD/namespace discovery: the RBAC grants neither

    client = await KubeClient.connect()
    client.on_request = lambda method, resource: ctx.metrics.api_requests.labels(method, resource).inc()
    ctx.cleanups.append(client.close)
    watchers = informers(client, ctx.view, list(cfg.namespaces))
    for informer in watchers:
        ctx.tasks.append(asyncio.create_task(informer.run(), name=f"elastic-watch {informer.path}"))
    for informer in watchers:  # never plan on a half-filled view
        await informer.listed.wait()
    if cfg.namespaces:
        await list_foreign_pods(client, ctx.view, list(cfg.namespaces))
    store = ReportStore()
    controller = Controller(
        client=client,
        view=ctx.view,
        settings=cfg,
        metrics=ctx.metrics,
        reports=store,
        token_key=ctx.token_key,
        report_url="",
    )
    ctx.cleanups.append(controller.close)  # before the client closes (cleanups run in reverse): pending events go out
    app = build_app(store, ctx.token_key, controller.job_uid, controller.directive, ctx.metrics, ctx.view.changed.set)
    runner, ctx.report_port = await serve(app, cfg.report_host, cfg.report_port)
    ctx.cleanups.append(runner.cleanup)
    controller.report_url = cfg.report_url or f"http://{cfg.report_host}:{ctx.report_port}"

    metrics_runner, ctx.metrics_port = await serve(_metrics_app(ctx), cfg.report_host, cfg.metrics_port)
    ctx.cleanups.append(metrics_runner.cleanup)
    log.info("report endpoint on port %d (pods use %s); metrics on port %d", ctx.report_port,
             controller.report_url, ctx.metrics_port)  # fmt: skip
    ctx.tasks.append(asyncio.create_task(_planner(ctx, controller), name="elastic-planner"))
    ctx.tasks.append(asyncio.create_task(_resync(ctx, client), name="elastic-resync"))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    ctx: OperatorContext = memo.ctx
    for task in ctx.tasks:
        task.cancel()
    for task in ctx.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for cleanup in reversed(ctx.cleanups):
        with contextlib.suppress(Exception):
            await cleanup()


def _metrics_app(ctx: OperatorContext) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(ctx.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def _resync(ctx: OperatorContext, client: KubeClient, every_s: float = 60.0) -> None:
    while True:
        await asyncio.sleep(every_s)  # a periodic timer, not synchronisation
        try:
            dropped = await resync_own_pods(client, ctx.view)
            if dropped:
                log.warning("resync dropped %d pods the watch had missed", dropped)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("resync failed; retrying later")


async def _planner(ctx: OperatorContext, controller: Controller) -> None:
    """Plan after every relevant change (debounced) and at least every planner_interval_s."""
    cfg = ctx.settings
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.view.changed.wait(), timeout=cfg.planner_interval_s)
        await asyncio.sleep(cfg.planner_debounce_s)  # let a burst of watch events land before planning
        ctx.view.changed.clear()
        try:
            with ctx.metrics.round_duration.time():
                await controller.run_round(pipelined=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            ctx.metrics.apply_errors.labels("round").inc()
            log.exception("planning round failed; the next round retries")
