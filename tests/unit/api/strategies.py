"""Hypothesis strategies for valid TrainingJob and TuningSweep objects (wire form, as a user or the operator would
write them). Shared by the unit round-trip tests and the integration round trip through the API server."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

JSON = dict[str, Any]

label = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
arg = text.filter(lambda s: "${params." not in s)
env_name = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
quantity = st.one_of(st.integers(0, 10_000), st.sampled_from(["500m", "1", "2", "1.5", "16Gi", "512Mi", "1e3", "4k"]))
seconds = st.integers(0, 86_400)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# whole seconds in UTC: what the controller writes (and what a Kubernetes timestamp holds)
timestamp = st.datetimes(
    min_value=__import__("datetime").datetime(2000, 1, 1), max_value=__import__("datetime").datetime(2100, 1, 1)
).map(lambda d: d.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ"))


def _maybe(draw: st.DrawFn, out: JSON, key: str, strategy: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        out[key] = draw(strategy)


@st.composite
def volumes_and_mounts(draw: st.DrawFn) -> tuple[list[JSON], list[JSON]]:
    names = draw(st.lists(label, unique=True, max_size=3))
    volumes: list[JSON] = []
    for name in names:
        source: JSON = draw(
            st.sampled_from(
                [
                    {"emptyDir": {}},
                    {"emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                    {"persistentVolumeClaim": {"claimName": "data", "readOnly": True}},
                    {"hostPath": {"path": "/tmp/x", "type": "DirectoryOrCreate"}},
                    {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.txt"}]}},
                    {"secret": {"secretName": "s"}},
                ]
            )
        )
        volumes.append({"name": name, **source})
    mounts = [{"name": n, "mountPath": f"/mnt/{n}"} for n in names if draw(st.booleans())]
    return volumes, mounts


@st.composite
def worker_templates(draw: st.DrawFn, args: st.SearchStrategy[str] = arg) -> JSON:
    volumes, mounts = draw(volumes_and_mounts())
    out: JSON = {
        "image": draw(
            st.sampled_from(["ghcr.io/elastic-training/elastic-trainer:0.1.0", "busybox", "r.io/a/b@sha256:0"])
        ),
        "command": draw(st.lists(arg, min_size=1, max_size=3).filter(lambda c: c[:2] != ["elastic-trainer", "launch"])),
    }
    _maybe(draw, out, "args", st.lists(args, max_size=4))
    _maybe(draw, out, "imagePullPolicy", st.sampled_from(["Always", "IfNotPresent", "Never"]))
    _maybe(draw, out, "workingDir", st.just("/workspace"))
    envs = draw(st.lists(env_name, unique=True, max_size=3))
    if envs:
        out["env"] = [
            {"name": n, "value": draw(args)}
            if draw(st.booleans())
            else {"name": n, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
            for n in envs
        ]
    resources: JSON = {}
    _maybe(draw, resources, "limits", st.dictionaries(st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), quantity))
    _maybe(draw, resources, "requests", st.dictionaries(st.sampled_from(["cpu", "memory"]), quantity))
    if resources:
        out["resources"] = resources
    if volumes:
        out["volumes"] = volumes
    if mounts:
        out["volumeMounts"] = mounts
    _maybe(draw, out, "nodeSelector", st.dictionaries(label, label, max_size=2))
    _maybe(
        draw,
        out,
        "tolerations",
        st.lists(
            st.sampled_from(
                [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "pool", "operator": "Equal", "value": "a"},
                    {"operator": "Exists"},
                    {"key": "x", "effect": "NoExecute", "tolerationSeconds": 30},
                ]
            ),
            max_size=2,
        ),
    )
    _maybe(draw, out, "labels", st.dictionaries(label, label, max_size=2))
    _maybe(draw, out, "annotations", st.dictionaries(label, arg, max_size=2))
    return out


@st.composite
def trainingjob_specs(draw: st.DrawFn, args: st.SearchStrategy[str] = arg) -> JSON:
    lo = draw(st.integers(1, 16))
    hi = draw(st.integers(lo, 32))
    template = draw(worker_templates(args))
    out: JSON = {"template": template, "maxWorkers": hi}
    _maybe(draw, out, "minWorkers", st.just(lo))
    _maybe(draw, out, "nprocPerWorker", st.integers(1, 8))
    _maybe(draw, out, "priority", st.integers(-1000, 1000))
    _maybe(draw, out, "priorityClassName", label)
    _maybe(
        draw,
        out,
        "elasticity",
        st.fixed_dictionaries(
            {},
            optional={"rescaleCooldownSeconds": seconds, "allowShrink": st.booleans(), "allowRequeue": st.booleans()},
        ),
    )
    storage = draw(st.sampled_from([{}, {"claimName": "ckpt"}, {"hostPath": "/tmp/ckpt"}]))
    if draw(st.booleans()):
        out["checkpoint"] = {
            **storage,
            **draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "path": st.just("/ckpt"),
                        "intervalSeconds": seconds,
                        "intervalSteps": st.integers(0, 10_000),
                        "keep": st.integers(1, 5),
                    },
                )
            ),
        }
    if draw(st.booleans()):
        backoff = draw(st.integers(0, 600))
        out["failurePolicy"] = {
            "maxRestarts": draw(st.integers(0, 10)),
            "backoffSeconds": backoff,
            "maxBackoffSeconds": draw(st.integers(backoff, 3600)),
        }
    _maybe(draw, out, "suspend", st.booleans())
    _maybe(draw, out, "ttlSecondsAfterFinished", seconds)
    _maybe(draw, out, "activeDeadlineSeconds", st.integers(1, 10**6))
    return out


@st.composite
def trainingjob_statuses(draw: st.DrawFn) -> JSON:
    slots = draw(st.lists(st.integers(0, 50), unique=True, max_size=4))
    out: JSON = {
        "phase": draw(
            st.sampled_from(["Queued", "Starting", "Running", "Rescaling", "Succeeded", "Failed", "Suspended"])
        ),
        "rescaleGeneration": draw(st.integers(0, 100)),
        "workers": {"current": draw(st.integers(0, 8)), "target": draw(st.integers(0, 8))},
        "restarts": {"workerFailed": draw(st.integers(0, 5)), "workerLost": 0, "rendezvousLost": 1},
        "rescales": {"grow": draw(st.integers(0, 5)), "shrink": 1, "requeue": 0},
        "observedGeneration": draw(st.integers(1, 10)),
        "message": draw(text),
        "conditions": [
            {
                "type": "Running",
                "status": draw(st.sampled_from(["True", "False", "Unknown"])),
                "reason": "Running",
                "message": draw(text),
                "lastTransitionTime": draw(timestamp),
                "observedGeneration": 1,
            }
        ],
        "controller": {
            "placement": [{"slot": s, "node": f"n{s}", "seen": draw(st.booleans())} for s in slots],
            "members": slots,
            "leaving": [{"slot": s, "since": draw(timestamp)} for s in slots[:1]],
            "nextSlot": max(slots, default=0) + 1,
            "rendezvousPod": "job-rdzv-1",
            "rendezvousSeen": True,
            "rendezvousCount": 1,
            "recentFailures": draw(st.lists(timestamp, max_size=2)),
            "generationStarted": draw(timestamp),
        },
    }
    _maybe(draw, out, "startTime", timestamp)
    _maybe(draw, out, "completionTime", timestamp)
    _maybe(draw, out, "lastRescaleTime", timestamp)
    if draw(st.booleans()):
        out["progress"] = {
            "step": draw(st.integers(0, 10**9)),
            "epoch": draw(st.integers(0, 1000)),
            "samplesPerSecond": draw(st.floats(0, 1e9, allow_nan=False)),
            "metrics": draw(st.dictionaries(label, finite, max_size=3)),
            "lastCheckpointStep": draw(st.integers(0, 10**6)),
            "lastReportTime": draw(timestamp),
        }
    if draw(st.booleans()):
        out["lastDecision"] = {
            "action": draw(st.sampled_from(["admit", "grow", "shrink", "requeue", "wait"])),
            "reason": draw(text),
            "targetWorkers": draw(st.integers(0, 8)),
            "queuePosition": 0,
            "queueDepth": draw(st.integers(0, 100)),
            "freeGPUs": draw(st.integers(0, 1000)),
            "blockingCause": "gpu",
            "inputs": draw(st.dictionaries(label, text, max_size=3)),
            "time": draw(timestamp),
        }
    return out


@st.composite
def trainingjobs(draw: st.DrawFn, with_status: bool = False) -> JSON:
    out: JSON = {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True))},
        "spec": draw(trainingjob_specs()),
    }
    if with_status:
        out["status"] = draw(trainingjob_statuses())
    return out


@st.composite
def parameters(draw: st.DrawFn) -> list[JSON]:
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), unique=True, min_size=1, max_size=4))
    out: list[JSON] = []
    for name in names:
        kind = draw(st.sampled_from(["float", "int", "categorical"]))
        if kind == "float":
            low = draw(st.floats(1e-6, 10, allow_nan=False))
            high = draw(st.floats(low * 2 + 1e-6, 1000, allow_nan=False))
            p: JSON = {"name": name, "type": "float", "low": low, "high": high}
            choice = draw(st.sampled_from(["log", "step", "plain"]))
            if choice == "log":
                p["log"] = True
            elif choice == "step":
                p["step"] = draw(st.floats(1e-3, 1, allow_nan=False))
        elif kind == "int":
            low_i = draw(st.integers(1, 100))
            p = {"name": name, "type": "int", "low": low_i, "high": draw(st.integers(low_i, 1000))}
            if draw(st.booleans()):
                p["log"] = True
            elif draw(st.booleans()):
                p["step"] = draw(st.integers(1, 4))
        else:
            p = {
                "name": name,
                "type": "categorical",
                "values": draw(st.lists(st.one_of(st.integers(-5, 500), label), min_size=1, max_size=4)),
            }
        out.append(p)
    return out


@st.composite
def tuningsweeps(draw: st.DrawFn, with_status: bool = False) -> JSON:
    params = draw(parameters())
    placeholder = st.sampled_from([f"${{params.{p['name']}}}" for p in params])
    args = st.one_of(arg, placeholder, placeholder.map(lambda p: f"--x={p}"))
    algorithm = draw(st.sampled_from(["random", "tpe", "cmaes", "grid"]))
    if algorithm == "grid":
        for p in params:
            if p["type"] == "float" and "step" not in p:
                p.pop("log", None)
                p["step"] = 0.5
    if algorithm == "cmaes" and all(p["type"] == "categorical" for p in params):
        algorithm = "random"
    max_trials = draw(st.integers(1, 200))
    policy = draw(st.sampled_from(["none", "median", "asha"]))
    early: JSON = {"policy": policy, "resource": draw(st.sampled_from(["epoch", "step"]))}
    if policy == "median" and draw(st.booleans()):
        early["median"] = {"startupTrials": 3, "warmup": 1, "interval": 2}
    if policy == "asha" and draw(st.booleans()):
        early["asha"] = {"minResource": 1, "maxResource": 27, "reductionFactor": 3, "minEarlyStoppingRate": 0}
    spec: JSON = {
        "parameters": params,
        "objective": {"metric": "val_accuracy", "direction": draw(st.sampled_from(["minimize", "maximize"]))},
        "algorithm": {"name": algorithm, "seed": draw(st.integers(0, 1000)), "startupTrials": 3},
        "earlyStopping": early,
        "maxTrials": max_trials,
        "parallelism": draw(st.integers(1, min(max_trials, 100))),
        "maxFailedTrials": draw(st.integers(0, 10)),
        "trialTemplate": {"metadata": {"labels": {"app": "t"}}, "spec": draw(trainingjob_specs(args))},
    }
    if draw(st.booleans()):
        spec["objective"]["target"] = draw(finite)
    if draw(st.booleans()):
        spec["budget"] = {"gpuHours": draw(st.floats(0.1, 1000, allow_nan=False)), "activeDeadlineSeconds": 3600}
    out: JSON = {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TuningSweep",
        "metadata": {"name": draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True))},
        "spec": spec,
    }
    if with_status:
        n = draw(st.integers(0, 5))
        trials = [
            {
                "number": i,
                "params": {p["name"]: "1" for p in params},
                "state": draw(st.sampled_from(["Pending", "Running", "Succeeded", "Pruned", "Failed"])),
                "value": draw(finite),
                "intermediate": draw(st.dictionaries(st.integers(0, 100).map(str), finite, max_size=3)),
            }
            for i in range(n)
        ]
        out["status"] = {
            "phase": draw(st.sampled_from(["Running", "Succeeded", "Failed", "Suspended"])),
            "trialCounts": {"total": n, "pending": 0, "running": 1, "succeeded": 0, "pruned": 0, "failed": 0},
            "trials": trials,
            "nextTrialNumber": n,
            "gpuHoursUsed": draw(st.floats(0, 100, allow_nan=False)),
            "startTime": draw(timestamp),
        }
        if trials:
            out["status"]["bestTrial"] = {
                "number": 0,
                "jobName": f"{out['metadata']['name']}-t0",
                "params": trials[0]["params"],
                "value": trials[0]["value"],
            }
    return out
