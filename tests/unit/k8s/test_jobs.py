"""Parsing watched TrainingJobs: what the schema cannot reject becomes field-named errors, never a crash."""

from __future__ import annotations

from typing import Any

from elastic_operator.k8s.jobs import STOP_ANNOTATION, parse_job


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "minWorkers": 2,
        "maxWorkers": 4,
        "template": {"image": "img", "command": ["python", "train.py"], "resources": {"limits": {"nvidia.com/gpu": 2}}},
    }
    base.update(spec)
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "job", "namespace": "ns", "uid": "u1", "annotations": {}},
        "spec": base,
    }


def test_valid_job_yields_facts_template_and_requests() -> None:
    ctx = parse_job(manifest(priority=5, elasticity={"rescaleCooldownSeconds": 30, "allowShrink": False}))
    assert ctx.errors == []
    assert (ctx.facts.min_workers, ctx.facts.max_workers) == (2, 4)
    assert ctx.priority == 5
    assert ctx.cooldown_s == 30.0
    assert ctx.may_shrink is False
    assert ctx.requests == {"nvidia.com/gpu": "2"}
    assert list(ctx.template.command) == ["python", "train.py"]


def test_leftover_placeholder_is_an_error_naming_the_field() -> None:
    obj = manifest()
    obj["spec"]["template"]["env"] = [{"name": "LR", "value": "${params.lr}"}]
    ctx = parse_job(obj)
    assert ctx.errors, "a placeholder outside a sweep must be refused"
    assert any("spec.template.env[0].value" in path for path, _ in ctx.errors), ctx.errors


def test_bad_types_are_errors_not_exceptions() -> None:
    ctx = parse_job(manifest(minWorkers="two"))
    assert any(path.endswith("minWorkers") for path, _ in ctx.errors), ctx.errors


def test_stop_annotation_reaches_the_lifecycle() -> None:
    obj = manifest()
    obj["metadata"]["annotations"][STOP_ANNOTATION] = "pruned"
    assert parse_job(obj).facts.stop_reason == "pruned"


def test_each_job_checkpoints_in_its_own_directory_of_the_shared_volume() -> None:
    shared = {"path": "/ckpt/", "hostPath": "/data/sweep"}
    a = parse_job(manifest(checkpoint=shared))
    other = manifest(checkpoint=shared)
    other["metadata"]["name"] = "job-2"
    b = parse_job(other)
    assert a.template.checkpoint_dir == "/ckpt/ns/job"
    assert b.template.checkpoint_dir == "/ckpt/ns/job-2"
    assert {"name": "elastic-checkpoints", "mountPath": "/ckpt/"} in a.template.volume_mounts  # the volume itself
    assert parse_job(manifest()).template.checkpoint_dir == "/checkpoints/ns/job"


def test_parsing_is_memoised_per_generation_and_always_carries_the_latest_object() -> None:
    first = manifest(maxWorkers=4)
    first["metadata"].update(uid="memo", generation=1)
    assert parse_job(first).facts.max_workers == 4
    with_status = {**first, "status": {"phase": "Running"}}
    assert parse_job(with_status).obj is with_status  # same generation: the parsed spec, the latest object
    edited = manifest(maxWorkers=8)
    edited["metadata"].update(uid="memo", generation=2)
    assert parse_job(edited).facts.max_workers == 8
    stopped = {**edited, "metadata": {**edited["metadata"], "annotations": {STOP_ANNOTATION: "pruned"}}}
    assert parse_job(stopped).facts.stop_reason == "pruned"  # the stop annotation does not bump the generation
