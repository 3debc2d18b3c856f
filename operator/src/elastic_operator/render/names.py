"""Names and labels of the objects the operator creates for a job: one place, used by render and the watches."""

from __future__ import annotations

JOB_LABEL = "elastic.training/job-name"
JOB_UID_LABEL = "elastic.training/job-uid"
ROLE_LABEL = "elastic.training/role"
SLOT_LABEL = "elastic.training/slot"
SWEEP_LABEL = "elastic.training/sweep"
MANAGED_BY = "app.kubernetes.io/managed-by"
OPERATOR_NAME = "elastic-training-operator"

WORKER = "worker"
RENDEZVOUS = "rendezvous"

TOKEN_KEY = "token"


def token_secret_name(job: str) -> str:
    return f"{job}-report-token"


def network_policy_name(job: str) -> str:
    return f"{job}-rdzv"
