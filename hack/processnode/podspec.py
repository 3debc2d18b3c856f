"""Pure helpers: what a pod spec means for a host process, and the pod statuses a kubelet would report.

Nothing here does I/O except `prepare_volumes` (which creates directories); the env resolution takes the
Secret/ConfigMap reads as a callback so that it stays testable.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

MOUNT_ENV_PREFIX = "ELASTIC_PROCESS_NODE_MOUNT_"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ConfigError(Exception):
    """The pod cannot be started as it is. `retry`: it may start later (a Secret or ConfigMap not there yet),
    as a kubelet keeps retrying (CreateContainerConfigError); otherwise the pod fails."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


# -- $(VAR) expansion ------------------------------------------------------------------------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes NAME's value when NAME is defined and stays as written
    otherwise; `$$` is an escaped `$` (so `$$(NAME)` gives a literal `$(NAME)`); any other `$` is kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


# -- volumes and mount paths -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mounts:
    """The container's mount paths mapped to host directories. Substitution replaces a mount path where it
    appears as a whole path (or the start of one: `/ckpt/run1` -> `<host>/run1`) inside a string; `/ckpt` in
    `/ckptx` or `/data/ckpt` is left alone. Each string is substituted once, longest mount path first."""

    paths: Mapping[str, Path] = field(default_factory=dict)

    def _pattern(self) -> re.Pattern[str] | None:
        if not self.paths:
            return None
        ordered = sorted(self.paths, key=len, reverse=True)
        alternatives = "|".join(re.escape(p.rstrip("/") or "/") for p in ordered)
        return re.compile(rf"(?<![\w.\-/])({alternatives})(?![\w.\-])")

    def substitute(self, text: str) -> str:
        pattern = self._pattern()
        if pattern is None:
            return text
        by_path = {p.rstrip("/") or "/": str(host) for p, host in self.paths.items()}
        return pattern.sub(lambda m: by_path[m.group(1)], text)

    def env(self) -> dict[str, str]:
        return {mount_env_name(p): str(host) for p, host in self.paths.items()}


def mount_env_name(mount_path: str) -> str:
    """`/checkpoints/run-1` -> `ELASTIC_PROCESS_NODE_MOUNT_CHECKPOINTS_RUN_1`."""
    return MOUNT_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", mount_path).strip("_").upper()


def volume_dirs(pod: JSON, pod_dir: Path, claims_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Host directories for the pod's volumes (created): emptyDir -> `<pod_dir>/volumes/<name>`, hostPath -> the
    path itself, persistentVolumeClaim -> `<claims_dir>/<namespace>/<claim>` (shared by every pod of the claim).
    Returns the directories by volume name and notes on volumes of other kinds (ignored)."""
    namespace = pod["metadata"]["namespace"]
    dirs: dict[str, Path] = {}
    ignored: list[str] = []
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if "emptyDir" in volume:
            dirs[name] = pod_dir / "volumes" / name
        elif "hostPath" in volume:
            dirs[name] = Path(volume["hostPath"]["path"])
        elif "persistentVolumeClaim" in volume:
            dirs[name] = claims_dir / namespace / volume["persistentVolumeClaim"]["claimName"]
        else:  # e.g. the projected service-account token volume, configMap, secret
            kind = next((k for k in volume if k != "name"), "?")
            ignored.append(f"volume {name} ({kind}) is not supported by the process node; it is ignored")
            continue
        dirs[name].mkdir(parents=True, exist_ok=True)
    return dirs, ignored


def container_mounts(container: JSON, dirs: Mapping[str, Path]) -> Mounts:
    paths: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        host = dirs.get(mount["name"])
        if host is None:
            continue
        sub = mount.get("subPath")
        if sub:
            host = host / sub
            host.mkdir(parents=True, exist_ok=True)
        paths[mount["mountPath"]] = host
    return Mounts(paths)


# -- environment -----------------------------------------------------------------------------------------------

# read(kind, namespace, name) -> the object's data as text (Secret data decoded), or None when it does not exist
ReadData = Callable[[str, str, str], Awaitable[dict[str, str] | None]]


def field_ref(pod: JSON, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or []),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"fieldRef {path!r} is not supported by the process node", retry=False)


async def _ref_value(kind: str, ref: JSON, namespace: str, read: ReadData) -> str | None:
    optional = bool(ref.get("optional"))
    data = await read(kind, namespace, ref["name"])
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref["name"]}" not found', retry=True)
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}", retry=True)
    return data[ref["key"]]


async def container_env(pod: JSON, container: JSON, read: ReadData) -> dict[str, str]:
    """The container's environment as the kubelet computes it: envFrom first, then env in order, a `value`
    expanded against the variables defined before it; secretKeyRef, configMapKeyRef and fieldRef resolved."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if key not in source:
                continue
            ref = source[key]
            data = await read(kind, namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref["name"]}" not found', retry=True)
            for name, text in data.items():
                if _ENV_NAME.match(prefix + name):
                    env[prefix + name] = text
    for var in container.get("env") or []:
        name = var["name"]
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(var.get("value", ""), env)
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind, key = ("Secret", "secretKeyRef") if "secretKeyRef" in source else ("ConfigMap", "configMapKeyRef")
            value = await _ref_value(kind, source[key], namespace, read)
            if value is not None:
                env[name] = value
        elif "fieldRef" in source:
            env[name] = field_ref(pod, source["fieldRef"]["fieldPath"])
        else:
            raise ConfigError(f"env {name}: {sorted(source)} is not supported by the process node", retry=False)
    return env


def command_line(container: JSON, env: Mapping[str, str]) -> list[str]:
    """`command + args` with `$(VAR)` expanded. The image is ignored, so a container without `command` cannot
    run (its entrypoint would come from the image)."""
    command = container.get("command") or []
    if not command:
        raise ConfigError(
            f"container {container['name']} has no command: the process node ignores images, so it needs one",
            retry=False,
        )
    return [expand(part, env) for part in [*command, *(container.get("args") or [])]]


def gpu_request(container: JSON, resource: str) -> int:
    resources = container.get("resources") or {}
    value = (resources.get("limits") or {}).get(resource) or (resources.get("requests") or {}).get(resource) or 0
    return int(value)


# -- statuses --------------------------------------------------------------------------------------------------


def _conditions(ready: bool, *, reason: str | None = None, at: str) -> list[JSON]:
    def condition(kind: str, status: bool, why: str | None = None) -> JSON:
        c: JSON = {"type": kind, "status": "True" if status else "False", "lastTransitionTime": at}
        if why and not status:
            c["reason"] = why
        return c

    return [
        condition("PodReadyToStartContainers", True),
        condition("Initialized", True),
        condition("Ready", ready, reason),
        condition("ContainersReady", ready, reason),
    ]


def _container_status(container: JSON, state: JSON, *, ready: bool, container_id: str = "") -> JSON:
    status: JSON = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": 0,
        "state": state,
    }
    if container_id:
        status["containerID"] = container_id
    return status


def addresses(pod_ip: str, host_ip: str) -> JSON:
    return {"hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}


def waiting_status(pod: JSON, reason: str, message: str, host_ip: str, started: str) -> JSON:
    container = pod["spec"]["containers"][0]
    return {
        "phase": "Pending",
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": started,
        "conditions": _conditions(False, reason="ContainersNotReady", at=started),
        "containerStatuses": [
            _container_status(container, {"waiting": {"reason": reason, "message": message}}, ready=False)
        ],
    }


def running_status(pod: JSON, pod_ip: str, host_ip: str, started: str, pid: int) -> JSON:
    container = pod["spec"]["containers"][0]
    state = {"running": {"startedAt": started}}
    return {
        "phase": "Running",
        **addresses(pod_ip, host_ip),
        "startTime": started,
        "conditions": _conditions(True, at=started),
        "containerStatuses": [_container_status(container, state, ready=True, container_id=f"process://{pid}")],
    }


def terminated_status(
    pod: JSON,
    exit_code: int,
    *,
    pod_ip: str | None,
    host_ip: str,
    started: str,
    finished: str,
    pid: int | None = None,
    reason: str | None = None,
    message: str = "",
    phase: str | None = None,
    pod_reason: str | None = None,
    pod_message: str | None = None,
) -> JSON:
    """A terminal status: Succeeded for exit code 0, Failed otherwise (restartPolicy Never; OnFailure is treated
    the same way by the process node)."""
    container = pod["spec"]["containers"][0]
    terminated: JSON = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started,
        "finishedAt": finished,
    }
    if message:
        terminated["message"] = message
    if pid is not None:
        terminated["containerID"] = f"process://{pid}"
    status: JSON = {
        "phase": phase or ("Succeeded" if exit_code == 0 else "Failed"),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": started,
        "conditions": _conditions(False, reason="PodCompleted", at=finished),
        "containerStatuses": [
            _container_status(
                container, {"terminated": terminated}, ready=False, container_id=terminated.get("containerID", "")
            )
        ],
    }
    if pod_ip:
        status.update(addresses(pod_ip, host_ip))
    if pod_reason:
        status["reason"] = pod_reason
    if pod_message:
        status["message"] = pod_message
    return status


def is_terminal(pod: JSON) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def log_tail(data: bytes, *, lines: int = 80, limit: int = 2048) -> str:
    """What `terminationMessagePolicy: FallbackToLogsOnError` puts in the terminated state's message."""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])[-limit:]


def pod_key(pod: JSON) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
