"""A thin JSON-in, JSON-out layer over kubernetes_asyncio's ApiClient (authentication and TLS from a kubeconfig),
plus a line-by-line watch. Plain dicts keep the agent close to what the API server sends."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client, config

JSON = dict[str, Any]
T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubeError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        try:
            self.body: JSON = json.loads(body)
        except ValueError:
            self.body = {"message": body.decode("utf-8", "replace")}
        super().__init__(f"HTTP {status}: {self.body.get('message', '')}")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the API server is unreachable, overloaded or failed."""
    if isinstance(exc, KubeError):
        return exc.status in (429, 500, 502, 503, 504)
    return isinstance(exc, aiohttp.ClientError | OSError | asyncio.TimeoutError)


async def retrying(call: Callable[[], Coroutine[Any, Any, T]], *, attempts: int = 30, delay: float = 0.5) -> T:
    """Retry a call on transient errors (about 30 s in all by default)."""
    for attempt in range(attempts):
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts - 1:
                raise
            await asyncio.sleep(min(delay * (attempt + 1), 2.0))
    raise AssertionError("unreachable")


def path_part(text: str) -> str:
    return quote(text, safe="")


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    @classmethod
    async def connect(cls, kubeconfig: str | None) -> Kube:
        configuration = client.Configuration()
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(client.ApiClient(configuration=configuration))

    async def close(self) -> None:
        await self.api.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        request_timeout: float | aiohttp.ClientTimeout = 30.0,
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=request_timeout,
        )
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        response = await self._send(method, path, query=query, body=body, content_type=content_type)
        try:
            data = await response.read()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise KubeError(response.status, data)
        result: JSON = json.loads(data) if data else {}
        return result

    async def get(self, path: str, **kw: Any) -> JSON | None:
        """GET, or None when the object does not exist."""
        try:
            return await self.request("GET", path, **kw)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def watch(self, path: str, query: list[tuple[str, str]], *, timeout_s: int = 300) -> AsyncIterator[JSON]:
        """The events of one watch request (`timeoutSeconds` bounds it server-side); the caller re-lists or
        re-watches when it ends."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout_s + 30)
        response = await self._send(
            "GET", path, query=[*query, ("watch", "true"), ("timeoutSeconds", str(timeout_s))], request_timeout=timeout
        )
        try:
            if not 200 <= response.status < 300:
                raise KubeError(response.status, await response.read())
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release()

    async def read_data(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data (decoded as UTF-8) or a ConfigMap's data; None when the object does not exist."""
        resource = {"Secret": "secrets", "ConfigMap": "configmaps"}[kind]
        obj = await retrying(
            lambda: self.get(f"/api/v1/namespaces/{path_part(namespace)}/{resource}/{path_part(name)}")
        )
        if obj is None:
            return None
        data: dict[str, str] = obj.get("data") or {}
        if kind == "Secret":
            return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
        return dict(data)
