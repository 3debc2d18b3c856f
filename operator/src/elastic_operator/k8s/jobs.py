"""A watched TrainingJob object -> what the controller needs: validated facts, the worker template, or errors.

Validation goes through the API models (elastic_operator.api), so the operator and the CRD schema agree; what the
schema cannot say (e.g. placeholders left in a job that no sweep rendered) is caught here and reported as an
InvalidSpec condition naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from elastic_operator.api.validation import validate_trainingjob
from elastic_operator.lifecycle.step import JobSpecFacts
from elastic_operator.render.pods import WorkerTemplate
from elastic_trainer import contract

JSON = dict[str, Any]


@dataclass(frozen=True)
class JobContext:
    obj: JSON
    facts: JobSpecFacts
    template: WorkerTemplate
    requests: dict[str, str] = field(default_factory=dict)  # per worker (limits stand in for missing requests)
    priority: int = 0
    cooldown_s: float | None = None
    may_shrink: bool = True
    may_requeue: bool = True
    errors: list[tuple[str, str]] = field(default_factory=list)


STOP_ANNOTATION = "elastic.training/stop"


def job_checkpoint_dir(path: str, obj: JSON) -> str:
    """The job's own directory under checkpoint.path: jobs (a sweep's trials above all) may share one volume, and
    none may resume from another's checkpoints. Keyed by name, so a job re-created under its name resumes."""
    return f"{path.rstrip('/')}/{obj['metadata'].get('namespace') or 'default'}/{obj['metadata']['name']}"


_parsed: dict[tuple[str, int, str, str], JobContext] = {}
_PARSED_MAX = 20_000


def parse_job(obj: JSON) -> JobContext:
    """Validated facts of a job. Memoised per (uid, generation, name, stop annotation): the spec of a stored object
    changes only with its generation, and every planning round parses every job (~2 ms each through the models:
    seconds per round at 2,000 jobs, bench/scale). Status changes do not invalidate it; `obj` is always the latest."""
    meta = obj.get("metadata") or {}
    uid, generation = meta.get("uid"), meta.get("generation")
    stop = (meta.get("annotations") or {}).get(STOP_ANNOTATION) or ""
    if not isinstance(uid, str) or not isinstance(generation, int):
        return _parse(obj)
    key = (uid, generation, str(meta.get("name")), str(stop))
    cached = _parsed.get(key)
    if cached is None:
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()  # crude, but bounded: a rebuild costs one round's parsing
        cached = _parsed[key] = replace(_parse(obj), obj={})  # the memo keeps no object alive
    return replace(cached, obj=obj)


def _parse(obj: JSON) -> JobContext:
    name = obj["metadata"]["name"]
    model, errors = validate_trainingjob(obj)
    if model is None or errors:
        return JobContext(
            obj=obj,
            facts=JobSpecFacts(name=name, min_workers=1, max_workers=1),
            template=WorkerTemplate(image="", command=()),
            errors=errors or [("spec", "invalid")],
        )
    spec = model.spec
    t = spec.template
    resources = t.resources.model_dump(mode="json", by_alias=True, exclude_none=True) if t.resources else {}
    requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    volumes = [v.model_dump(mode="json", by_alias=True, exclude_none=True) for v in t.volumes]
    mounts = [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in t.volume_mounts]
    ckpt = spec.checkpoint
    if ckpt is not None:  # the shared checkpoint volume every worker of the job mounts at checkpoint.path
        source: JSON | None = None
        if ckpt.claim_name:
            source = {"persistentVolumeClaim": {"claimName": ckpt.claim_name}}
        elif ckpt.host_path:
            source = {"hostPath": {"path": ckpt.host_path, "type": "DirectoryOrCreate"}}
        volume_name = ckpt.volume_name or "elastic-checkpoints"
        if source is not None:
            volumes.append({"name": volume_name, **source})
        if not any(m.get("mountPath") == ckpt.path for m in mounts):
            mounts.append({"name": volume_name, "mountPath": ckpt.path})
    trainer_env: dict[str, str] = {}
    if ckpt is not None and ckpt.interval_steps:
        trainer_env[contract.ENV_CHECKPOINT_INTERVAL_STEPS] = str(ckpt.interval_steps)
    if ckpt is not None:
        trainer_env[contract.ENV_CHECKPOINT_KEEP] = str(ckpt.keep)
    template = WorkerTemplate(
        image=t.image,
        command=(*t.command, *t.args),
        env=[e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in t.env],
        resources=resources,
        volumes=volumes,
        volume_mounts=mounts,
        trainer_env=trainer_env,
        node_selector=dict(t.node_selector),
        tolerations=[x.model_dump(mode="json", by_alias=True, exclude_none=True) for x in t.tolerations],
        nproc_per_worker=spec.nproc_per_worker,
        checkpoint_dir=job_checkpoint_dir(spec.checkpoint.path if spec.checkpoint else "/checkpoints", obj),
        priority_class_name=spec.priority_class_name,
        labels=dict(t.labels),
        annotations=dict(t.annotations),
        working_dir=t.working_dir,
    )
    failure = spec.failure_policy
    facts = JobSpecFacts(
        name=name,
        min_workers=spec.min_workers,
        max_workers=spec.max_workers,
        suspend=bool(spec.suspend),
        active_deadline_s=float(spec.active_deadline_seconds) if spec.active_deadline_seconds else None,
        failure_budget=failure.max_restarts if failure else 3,
        stop_reason=((obj["metadata"].get("annotations") or {}).get(STOP_ANNOTATION) or ""),
    )
    elasticity = spec.elasticity
    return JobContext(
        obj=obj,
        facts=facts,
        template=template,
        requests={k: str(v) for k, v in requests.items()},
        priority=spec.priority or 0,
        cooldown_s=float(elasticity.rescale_cooldown_seconds) if elasticity else None,
        may_shrink=elasticity.allow_shrink if elasticity else True,
        may_requeue=elasticity.allow_requeue if elasticity else True,
    )
