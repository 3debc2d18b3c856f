"""Our own list-and-watch loops (informers) that fold watch events straight into the ClusterView.

Why not kopf's `on.event` handlers: kopf gives every object its own worker task and, for every event, builds a
deep-copied "diff base" of the whole object, wraps it, logs, and (for plain `def` handlers) hops to a thread. That
was most of the operator's CPU at scale (bench/scale: ~8 ms per event on the 2-core dev machine, tens of thousands
of events per minute with 2,000 jobs), and the view only needs the raw object. An informer costs one JSON decode
and one dict store per event.

Each informer lists its kind once (replacing what the view held for that scope, so deletions missed while
disconnected are dropped), then watches from the listing's resourceVersion. A broken stream resumes from the last
version seen; an expired version (410 Gone) lists again. Bookmarks keep the version fresh on quiet streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from kubernetes_asyncio.client.exceptions import ApiException

from elastic_operator.k8s.client import KubeClient
from elastic_operator.k8s.view import ClusterView

log = logging.getLogger("elastic_operator.watch")

JSON = dict[str, Any]


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


@dataclass
class Informer:
    client: KubeClient
    view: ClusterView
    kind: str  # Node | Pod | TrainingJob | TuningSweep (ClusterView.observe's kinds)
    path: str  # the collection: /api/v1/nodes, /api/v1/namespaces/<ns>/pods, ...
    namespace: str | None = None  # the scope a listing replaces (None: every namespace)
    server_timeout_s: int = 300
    listed: asyncio.Event = field(default_factory=asyncio.Event)  # set after the first complete listing
    backoff_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 5.0)

    async def run(self) -> None:
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list()
                    self.listed.set()
                async for event_type, obj in self._stream(version):
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event_type != "BOOKMARK":
                        obj.setdefault("kind", self.kind)
                        self.view.observe(self.kind, event_type, obj)
                    failures = 0
            except asyncio.CancelledError:
                raise
            except Expired:
                log.info("watch of %s expired; listing again", self.path)
                version = None
            except Exception as exc:  # the API server restarted, the connection broke: resume after a pause
                delay = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
                failures += 1
                if isinstance(exc, ApiException) and exc.status == 410:
                    version = None
                log.warning("watch of %s failed (%s); retrying in %.2fs", self.path, _describe(exc), delay)
                await asyncio.sleep(delay)  # backoff, not synchronisation

    async def _list(self) -> str:
        listing = await self.client.request("GET", self.path)
        items: list[JSON] = listing.get("items") or []
        for item in items:
            item.setdefault("kind", self.kind)
        self.view.replace(self.kind, items, self.namespace)
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    async def _stream(self, version: str) -> AsyncIterator[tuple[str, JSON]]:
        query = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.server_timeout_s)),
        ]
        resp = await self.client.open_stream(self.path, query, timeout_s=self.server_timeout_s + 30)
        try:
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    event_type, obj = event.get("type"), event.get("object") or {}
                    if event_type == "ERROR":
                        if obj.get("code") == 410:
                            raise Expired(obj.get("message", ""))
                        raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                    yield str(event_type), obj
        finally:
            resp.release()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def informers(client: KubeClient, view: ClusterView, namespaces: list[str]) -> list[Informer]:
    """Nodes cluster-wide; pods and our kinds cluster-wide, or per watched namespace (a namespaced Role suffices
    for those; nodes and pods are read cluster-wide for capacity at start-up, see `k8s.sync`)."""
    group = "/apis/elastic.training/v1alpha1"
    out = [Informer(client, view, "Node", "/api/v1/nodes")]
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    for ns in scopes:
        prefix = f"/namespaces/{ns}" if ns else ""
        out += [
            Informer(client, view, "Pod", f"/api/v1{prefix}/pods", ns),
            Informer(client, view, "TrainingJob", f"{group}{prefix}/trainingjobs", ns),
            Informer(client, view, "TuningSweep", f"{group}{prefix}/tuningsweeps", ns),
        ]
    return out
