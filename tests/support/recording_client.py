"""In-memory stand-ins for the operator's KubeClient in unit tests of a controller round (no API server)."""

from __future__ import annotations

import copy
from typing import Any

JSON = dict[str, Any]


class RecordingClient:
    """Records every status patch; every other write succeeds and does nothing."""

    def __init__(self) -> None:
        self.status_patches: list[JSON] = []

    async def patch_status(self, kind: str, ns: str, name: str, patch: JSON) -> JSON:
        self.status_patches.append(copy.deepcopy(patch["status"]))
        return {}

    async def create(self, obj: JSON) -> JSON | None:
        """Stored, as the API server answers a 201: the object with a resourceVersion."""
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = "1"
        return stored

    async def delete(self, kind: str, namespace: str, name: str, grace_seconds: int | None = None) -> bool:
        return True

    async def post_event(self, event: JSON) -> None:
        return None

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> JSON:
        return {}


class StoringClient(RecordingClient):
    """Also applies status merge patches to one stored object and bumps its resourceVersion, as the API server
    does, and answers with the stored object."""

    def __init__(self, stored: JSON) -> None:
        super().__init__()
        self.stored = copy.deepcopy(stored)

    async def patch_status(self, kind: str, ns: str, name: str, patch: JSON) -> JSON:
        await super().patch_status(kind, ns, name, patch)
        self.stored["status"] = {**self.stored["status"], **copy.deepcopy(patch["status"])}
        meta = self.stored["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.stored)
