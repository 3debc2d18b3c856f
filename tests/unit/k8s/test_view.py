"""The watched view: listings replace their scope, our own writes are not undone by an older watch event, and a
status patch is only sent when it changes something (null means absent in a merge patch)."""

from __future__ import annotations

from typing import Any

from elastic_operator.controller import _changed_keys
from elastic_operator.k8s.client import resource_of
from elastic_operator.k8s.view import ClusterView


def pod(ns: str, name: str, rv: str = "1") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv}}


def test_a_listing_drops_what_it_lacks_only_in_its_namespace() -> None:
    view = ClusterView()
    for p in (pod("a", "x"), pod("a", "gone"), pod("b", "other")):
        view.observe("Pod", "ADDED", p)
    view.changed.clear()
    view.replace("Pod", [pod("a", "x", "2")], "a")
    assert set(view.pods) == {("a", "x"), ("b", "other")}
    assert view.changed.is_set()
    view.replace("Pod", [pod("a", "x", "3")])  # cluster-wide listing: everything it lacks is gone
    assert set(view.pods) == {("a", "x")}


def test_an_older_version_does_not_replace_a_newer_one() -> None:
    view = ClusterView()
    view.observe("TrainingJob", "MODIFIED", {**pod("a", "j", "10"), "status": {"phase": "Starting"}})
    view.observe("TrainingJob", "MODIFIED", {**pod("a", "j", "9"), "status": {"phase": "Queued"}})
    assert view.jobs[("a", "j")]["status"]["phase"] == "Starting"
    view.observe("TrainingJob", "MODIFIED", {**pod("a", "j", "11"), "status": {"phase": "Running"}})
    assert view.jobs[("a", "j")]["status"]["phase"] == "Running"


def test_a_null_in_a_patch_equals_an_absent_field() -> None:
    stored = {"phase": "Queued", "controller": {"members": [], "nextSlot": 0}}
    patch = {"phase": "Queued", "controller": {"members": [], "nextSlot": 0, "generationStarted": None}}
    assert _changed_keys(stored, patch) == []
    assert _changed_keys(stored, {**patch, "phase": "Starting"}) == ["phase"]
    assert _changed_keys(stored, {"controller": {"members": [1], "nextSlot": 0}}) == ["controller"]


def test_requests_are_counted_by_resource() -> None:
    assert resource_of("/api/v1/namespaces/ns/pods/p") == "pods"
    assert resource_of("/apis/elastic.training/v1alpha1/namespaces/ns/trainingjobs/j/status") == "trainingjobs/status"
    assert resource_of("/api/v1/nodes") == "nodes"
    assert resource_of("/apis/events.k8s.io/v1/namespaces/ns/events") == "events"
