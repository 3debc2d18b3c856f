"""SweepController against a fake API client: write order (status before creates), level-based creates, stop and
promising annotations, the stale-view cache, invalid specs reported once."""

from __future__ import annotations

import copy
import json
from typing import Any

from elastic_operator.k8s.client import KubeClient
from elastic_operator.k8s.sweeps import SweepController
from elastic_operator.k8s.view import ClusterView
from tests.unit.sweep.world import sweep_json


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 10

    path = staticmethod(KubeClient.path)

    async def patch_status(self, kind: str, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.calls.append(("status", copy.deepcopy(patch["status"])))
        obj = copy.deepcopy(self.objects[name])
        obj["status"] = patch["status"]
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[name] = obj
        return obj

    async def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append(("create", obj["metadata"]["name"]))
        if obj["metadata"]["name"] in self.objects:
            return None
        self.objects[obj["metadata"]["name"]] = obj
        return obj

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> dict[str, Any]:
        self.calls.append((method, (path.rsplit("/", 1)[-1], body)))
        return {}

    async def post_event(self, event: dict[str, Any]) -> None:
        self.calls.append(("event", event["reason"]))


def setup(sweep: dict[str, Any]) -> tuple[FakeClient, ClusterView, SweepController]:
    client = FakeClient()
    view = ClusterView()
    sweep["metadata"]["resourceVersion"] = "5"
    client.objects[sweep["metadata"]["name"]] = copy.deepcopy(sweep)
    view.observe("TuningSweep", None, sweep)
    return client, view, SweepController(client, view, ["ns"])  # type: ignore[arg-type]


async def test_status_is_written_before_trials_are_created_and_creates_are_level_based() -> None:
    client, _view, ctl = setup(sweep_json(max_trials=4, parallelism=2))
    await ctl.run_round(1000.0)
    kinds = [c[0] for c in client.calls]
    assert kinds.index("status") < kinds.index("create")
    created = [c[1] for c in client.calls if c[0] == "create"]
    assert created == ["sw-t0", "sw-t1"]
    job = client.objects["sw-t0"]
    assert job["metadata"]["labels"]["elastic.training/sweep"] == "sw"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    params = json.loads(job["metadata"]["annotations"]["elastic.training/trial-params"])
    assert job["spec"]["template"]["args"] == [f"--x={params['x']}", f"--n={params['n']}"]
    # the view has not seen our status patch nor the jobs: the next round uses the patched object, asks nothing new
    client.calls.clear()
    await ctl.run_round(1001.0)
    assert [c[1] for c in client.calls if c[0] == "create"] == ["sw-t0", "sw-t1"]  # 409-safe re-creates
    assert not [c for c in client.calls if c[0] == "status"]  # nothing changed


async def test_pruned_trials_get_the_stop_annotation_and_the_leader_is_marked() -> None:
    client, view, ctl = setup(sweep_json(max_trials=4, parallelism=2))
    await ctl.run_round(1000.0)
    view.observe("TuningSweep", "MODIFIED", client.objects["sw"])
    for i, loss in enumerate([1.0, 2.0]):
        job = copy.deepcopy(client.objects[f"sw-t{i}"])
        job["metadata"]["uid"] = f"j{i}"
        job["status"] = {"phase": "Running", "workers": {"current": 1},
                         "progress": {"epoch": 1, "step": 1, "metrics": {"loss": loss}}}  # fmt: skip
        view.observe("TrainingJob", None, job)
    client.calls.clear()
    await ctl.run_round(1010.0)
    patches = [c[1] for c in client.calls if c[0] == "PATCH"]
    assert ("sw-t0", {"metadata": {"annotations": {"elastic.training/promising": "true"}}}) in patches
    # a recorded stop decision is applied as an annotation
    status = copy.deepcopy(client.objects["sw"]["status"])
    status["trials"][1]["state"] = "Pruned"
    obj = copy.deepcopy(client.objects["sw"])
    obj["status"] = status
    obj["metadata"]["resourceVersion"] = "999"
    view.observe("TuningSweep", "MODIFIED", obj)
    client.objects["sw"] = obj
    client.calls.clear()
    await ctl.run_round(1020.0)
    patches = [c[1] for c in client.calls if c[0] == "PATCH"]
    assert ("sw-t1", {"metadata": {"annotations": {"elastic.training/stop": "pruned"}}}) in patches


async def test_an_invalid_sweep_is_reported_once_per_generation() -> None:
    bad = sweep_json()
    bad["spec"]["trialTemplate"]["spec"]["template"]["args"] = ["${params.x}${params.n}${params.zz}"]
    client, _view, ctl = setup(bad)
    await ctl.run_round(1000.0)
    statuses = [c[1] for c in client.calls if c[0] == "status"]
    assert len(statuses) == 1 and statuses[0]["phase"] == "Failed"
    assert "spec.trialTemplate.spec.template.args[0]" in statuses[0]["conditions"][-1]["message"]
    assert ("event", "InvalidSpec") in client.calls
    assert not [c for c in client.calls if c[0] == "create"]
    client.calls.clear()
    await ctl.run_round(1001.0)
    await ctl.run_round(1002.0)
    assert client.calls == []
