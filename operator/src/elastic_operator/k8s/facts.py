"""Raw watched objects -> the small frozen facts the pure layers reason about."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elastic_operator.lifecycle.step import PodFacts
from elastic_operator.policy.resources import parse_quantity
from elastic_operator.render.names import ROLE_LABEL, SLOT_LABEL

TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})


def pod_facts(pod: Mapping[str, Any]) -> PodFacts:
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    labels = meta.get("labels", {})
    slot = labels.get(SLOT_LABEL)
    exit_code = None
    for cs in status.get("containerStatuses", []) or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated is not None:
            exit_code = int(terminated.get("exitCode", 0))
            break
    disrupted = status.get("reason") in ("Evicted", "NodeLost", "Terminated", "Shutdown") or any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in status.get("conditions", []) or []
    )
    return PodFacts(
        name=meta["name"],
        role=labels.get(ROLE_LABEL, "worker"),
        slot=int(slot) if slot is not None and str(slot).isdigit() else None,
        phase=status.get("phase") or "Pending",
        node=(pod.get("spec") or {}).get("nodeName") or "",
        ip=status.get("podIP") or "",
        deleting=bool(meta.get("deletionTimestamp")),
        exit_code=exit_code,
        disrupted=disrupted,
    )


def pod_holds_resources(pod: Mapping[str, Any]) -> bool:
    """A bound pod that has not finished holds its requests (as the scheduler counts them)."""
    return (
        bool((pod.get("spec") or {}).get("nodeName"))
        and (pod.get("status") or {}).get("phase") not in TERMINAL_POD_PHASES
    )


def node_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions", []) or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    """Effective requests of a pod: the sum over containers (limits stand in for missing requests, as for
    extended resources), max'ed with each init container, as the scheduler computes them."""

    def requests_of(container: Mapping[str, Any]) -> dict[str, int]:
        res = container.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return {k: parse_quantity(k, str(v)) for k, v in merged.items()}

    total: dict[str, int] = {}
    spec = pod.get("spec") or {}
    for c in spec.get("containers", []) or []:
        for k, v in requests_of(c).items():
            total[k] = total.get(k, 0) + v
    for c in spec.get("initContainers", []) or []:
        for k, v in requests_of(c).items():
            total[k] = max(total.get(k, 0), v)
    return total
