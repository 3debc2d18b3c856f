"""Worker pods, the rendezvous pod and service, the token secret and the network policy of one TrainingJob.

Every pod is safe by default: no service-account token, non-root, no privilege escalation, all capabilities
dropped, RuntimeDefault seccomp (the "restricted" Pod Security Standard).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from elastic_operator.render.names import (
    JOB_LABEL,
    JOB_UID_LABEL,
    MANAGED_BY,
    OPERATOR_NAME,
    RENDEZVOUS,
    ROLE_LABEL,
    SLOT_LABEL,
    TOKEN_KEY,
    WORKER,
    network_policy_name,
    token_secret_name,
)
from elastic_trainer import contract

JSON = dict[str, Any]

RESTRICTED_CONTAINER_SECURITY: JSON = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class JobRef:
    namespace: str
    name: str
    uid: str
    api_version: str = "elastic.training/v1alpha1"
    kind: str = "TrainingJob"

    def owner_reference(self) -> JSON:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            # no blockOwnerDeletion: it would need update on trainingjobs/finalizers where
            # OwnerReferencesPermissionEnforcement is on; background deletion collects the pods anyway
        }

    def labels(self, role: str) -> dict[str, str]:
        return {JOB_LABEL: self.name, JOB_UID_LABEL: self.uid, ROLE_LABEL: role, MANAGED_BY: OPERATOR_NAME}


@dataclass(frozen=True)
class WorkerTemplate:
    """What a TrainingJob's spec says about each worker (filled from the API model by the controller)."""

    image: str
    command: Sequence[str]  # the training command; the operator runs it under `elastic-trainer launch --`
    env: Sequence[Mapping[str, Any]] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)
    volumes: Sequence[Mapping[str, Any]] = ()
    volume_mounts: Sequence[Mapping[str, Any]] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    nproc_per_worker: int = 1
    checkpoint_dir: str = "/checkpoints"
    trainer_env: Mapping[str, str] = field(default_factory=dict)  # optional ELASTIC_* tuning (contract.DEFAULTS)
    priority_class_name: str | None = None
    termination_grace_s: int = 60
    image_pull_policy: str | None = None
    run_as_user: int = 1000
    labels: Mapping[str, str] = field(default_factory=dict)  # extra pod labels from the template
    annotations: Mapping[str, str] = field(default_factory=dict)  # extra pod annotations from the template
    working_dir: str | None = None


def _pod_security(template: WorkerTemplate) -> JSON:
    return {
        "runAsNonRoot": True,
        "runAsUser": template.run_as_user,
        "runAsGroup": template.run_as_user,
        "fsGroup": template.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod(
    job: JobRef, template: WorkerTemplate, name: str, labels: dict[str, str], annotations: dict[str, str], spec: JSON
) -> JSON:
    """What every pod of a job shares: restricted security, no API credentials, the template's node selection,
    ownership by the job."""
    common: JSON = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(template),
    }
    if template.node_selector:
        common["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        common["tolerations"] = [dict(t) for t in template.tolerations]
    metadata: JSON = {
        "name": name,
        "namespace": job.namespace,
        "labels": labels,
        "ownerReferences": [job.owner_reference()],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {**common, **spec}}


def worker_pod(job: JobRef, template: WorkerTemplate, slot: int, node: str, pod_name: str, report_url: str) -> JSON:
    env: list[JSON] = [
        *contract.build_worker_env(
            namespace=job.namespace,
            name=job.name,
            uid=job.uid,
            report_url=report_url,
            token_secret=token_secret_name(job.name),
            token_key=TOKEN_KEY,
            checkpoint_dir=template.checkpoint_dir,
            nproc_per_worker=template.nproc_per_worker,
            extra=dict(template.trainer_env),
        ),
        *[dict(e) for e in template.env],
    ]
    container: JSON = {
        "name": "trainer",
        "image": template.image,
        "command": ["elastic-trainer", "launch", "--"],
        "args": list(template.command),
        "env": env,
        "resources": dict(template.resources),
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    if template.volume_mounts:
        container["volumeMounts"] = [dict(m) for m in template.volume_mounts]
    if template.image_pull_policy:
        container["imagePullPolicy"] = template.image_pull_policy
    if template.working_dir:
        container["workingDir"] = template.working_dir
    spec: JSON = {
        "terminationGracePeriodSeconds": template.termination_grace_s,
        # pinned to the node the policy chose; the scheduler still checks the fit and binds
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                    ]
                }
            }
        },
        "containers": [container],
    }
    if template.volumes:
        spec["volumes"] = [dict(v) for v in template.volumes]
    if template.priority_class_name:
        spec["priorityClassName"] = template.priority_class_name
    labels = {**template.labels, **job.labels(WORKER), SLOT_LABEL: str(slot)}
    return _pod(job, template, pod_name, labels, dict(template.annotations), spec)


def rendezvous_pod(job: JobRef, template: WorkerTemplate, pod_name: str, port: int) -> JSON:
    """The job's TCPStore server: tiny, never a worker, so no worker's death takes the store with it."""
    spec: JSON = {
        "terminationGracePeriodSeconds": 5,
        "containers": [
            {
                "name": "rendezvous",
                "image": template.image,
                "command": ["elastic-trainer", "rendezvous", "--port", str(port)],
                "ports": [{"name": "rendezvous", "containerPort": port}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": RESTRICTED_CONTAINER_SECURITY,
            }
        ],
        # Spread over nodes where it costs nothing (a preference): the scheduler's bin-packing otherwise stacks
        # every job's rendezvous pod on the fullest node until its pod slots run out, stranding its GPUs.
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {ROLE_LABEL: RENDEZVOUS}},
            }
        ],
    }
    return _pod(job, template, pod_name, job.labels(RENDEZVOUS), {}, spec)


def token_secret(job: JobRef, token: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": token_secret_name(job.name),
            "namespace": job.namespace,
            "labels": job.labels("token"),
            "ownerReferences": [job.owner_reference()],
        },
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def rendezvous_network_policy(job: JobRef, port: int) -> JSON:
    """Only this job's workers may reach its rendezvous port; the rendezvous pod needs no other ingress."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": network_policy_name(job.name),
            "namespace": job.namespace,
            "labels": job.labels(RENDEZVOUS),
            "ownerReferences": [job.owner_reference()],
        },
        "spec": {
            "podSelector": {"matchLabels": {JOB_LABEL: job.name, ROLE_LABEL: RENDEZVOUS}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {JOB_LABEL: job.name, ROLE_LABEL: WORKER}}}],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }
