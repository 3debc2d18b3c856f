"""A small facade over kubernetes_asyncio's ApiClient: raw JSON in and out, idempotent creates and deletes.

Everything the operator writes to the API server goes through here, so the RBAC the chart grants is exactly the
set of calls below (see charts/ and docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

GROUP = "elastic.training"
VERSION = "v1alpha1"
MERGE_PATCH = "application/merge-patch+json"

JSON = dict[str, Any]

# kind -> (API prefix, plural) for everything the operator creates or deletes
KINDS: dict[str, tuple[str, str]] = {
    "Pod": ("/api/v1", "pods"),
    "Secret": ("/api/v1", "secrets"),
    "Event": ("/apis/events.k8s.io/v1", "events"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "TrainingJob": (f"/apis/{GROUP}/{VERSION}", "trainingjobs"),
    "TuningSweep": (f"/apis/{GROUP}/{VERSION}", "tuningsweeps"),
}


def resource_of(path: str) -> str:
    """The resource a request path names, for counting: `pods`, `trainingjobs/status`, `nodes`."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if "namespaces" in parts:
        i = parts.index("namespaces")
        rest = parts[i + 2 :] if len(parts) > i + 2 else ["namespaces"]
    else:
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if not rest:
        return "other"
    return rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")


class KubeClient:
    """One ApiClient for the whole operator process. `on_request(method, resource)` is told of every request
    (the operator counts them: API requests per decision is a scale figure, see bench/scale)."""

    def __init__(self, api: client.ApiClient, on_request: Callable[[str, str], None] | None = None) -> None:
        self.api = api
        self.on_request = on_request

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> KubeClient:
        """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        configuration = client.Configuration()
        try:
            if kubeconfig:
                raise config.ConfigException("kubeconfig given")
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        api = client.ApiClient(configuration)
        # kubernetes_asyncio's aiohttp session trusts the environment, so aiohttp looks for a .netrc in a worker
        # thread before every request (a thread hop per call: ~1 ms each on a busy 2-core machine, bench/scale).
        # Credentials come from the kubeconfig or the service account, never from .netrc.
        session = getattr(api.rest_client, "pool_manager", None)
        if session is not None and hasattr(session, "_trust_env"):
            session._trust_env = False
        return cls(api)

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: Any = None,
        accept: str = "application/json",
    ) -> JSON:
        """One authenticated call; returns the decoded JSON body. Raises ApiException on HTTP errors."""
        if self.on_request is not None:
            self.on_request(method, resource_of(path))
        resp = await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": accept},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
        )
        raw = await resp.read()
        if not 200 <= resp.status <= 299:  # without preloading, the client does not raise by itself
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = raw.decode(errors="replace")
            raise exc
        data: JSON = orjson.loads(raw) if raw else {}  # responses are a tenth of the operator's CPU at scale
        return data

    async def open_stream(self, path: str, query: list[tuple[str, str]], timeout_s: float) -> Any:
        """A streaming GET (a watch): the unread aiohttp response; the caller reads `.content` and releases it."""
        if self.on_request is not None:
            self.on_request("WATCH", resource_of(path))
        resp = await self.api.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=timeout_s,
        )
        if not 200 <= resp.status <= 299:
            raw = await resp.read()
            resp.release()
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = raw.decode(errors="replace")
            raise exc
        return resp

    @staticmethod
    def path(kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        prefix, plural = KINDS[kind]
        out = f"{prefix}/namespaces/{namespace}/{plural}"
        if name:
            out += f"/{name}"
        if sub:
            out += f"/{sub}"
        return out

    # -- creates (409 Conflict means it exists: fine, apply is level-based) -------------------------------------

    async def create(self, obj: JSON) -> JSON | None:
        """Create a namespaced object of a kind the operator owns. Returns the object as stored, or None when one of
        that name already existed."""
        try:
            return await self.request("POST", self.path(obj["kind"], obj["metadata"]["namespace"]), obj)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    async def delete(self, kind: str, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
        """Delete (background propagation). Returns False when it was already gone."""
        body: JSON = {"propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            await self.request("DELETE", self.path(kind, namespace, name), body)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        try:
            return await self.request("GET", self.path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_status(self, kind: str, namespace: str, name: str, patch: JSON) -> JSON:
        """Merge-patch the status subresource of one of our custom objects; returns the object as stored."""
        return await self.request("PATCH", self.path(kind, namespace, name, "status"), patch, content_type=MERGE_PATCH)

    async def post_event(self, event: JSON) -> None:
        await self.request("POST", self.path("Event", event["metadata"]["namespace"]), event)
