"""A small synchronous client for the harness's own reads and writes: plain HTTPS with the dev cluster's admin
token (one kept-alive connection instead of a kubectl process per call, which the 2-core machine cannot afford
many times a second). Every call may fail while the API server restarts; callers treat a failure as "try later"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from hack.devcluster import DevCluster

JSON = dict[str, Any]
GROUP_PATH = "/apis/elastic.training/v1alpha1"


class Api:
    def __init__(self, cluster: DevCluster, timeout: float = 10.0) -> None:
        self.base = cluster.server
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # else REQUESTS_CA_BUNDLE (and proxies) from the environment override verify
        self.session.headers["Authorization"] = f"Bearer {cluster.token}"
        self.session.verify = str(Path(cluster.state.dir) / "pki" / "ca.crt")

    def get(self, path: str, **params: str) -> JSON:
        resp = self.session.get(self.base + path, params=params, timeout=self.timeout)
        resp.raise_for_status()
        out: JSON = resp.json()
        return out

    def items(self, path: str, **params: str) -> list[JSON]:
        return list(self.get(path, **params).get("items") or [])

    def pods(self, namespace: str) -> list[JSON]:
        return self.items(f"/api/v1/namespaces/{namespace}/pods")

    def jobs(self, namespace: str) -> list[JSON]:
        return self.items(f"{GROUP_PATH}/namespaces/{namespace}/trainingjobs")

    def sweeps(self, namespace: str) -> list[JSON]:
        return self.items(f"{GROUP_PATH}/namespaces/{namespace}/tuningsweeps")

    def create(self, path: str, body: JSON) -> int:
        return self.session.post(self.base + path, json=body, timeout=self.timeout).status_code

    def delete(self, path: str) -> int:
        return self.session.delete(
            self.base + path, json={"propagationPolicy": "Background"}, timeout=self.timeout
        ).status_code

    def merge_patch(self, path: str, body: JSON) -> int:
        resp = self.session.patch(
            self.base + path, json=body, timeout=self.timeout,
            headers={"Content-Type": "application/merge-patch+json"},
        )  # fmt: skip
        return resp.status_code

    def close(self) -> None:
        self.session.close()
