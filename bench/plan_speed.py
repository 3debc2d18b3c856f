"""`python -m bench.plan_speed`: how long one `plan()` takes on a big cluster; writes bench/results/plan_speed.json.

Scenario: 1,000 nodes (8 GPUs, 64 cores each, two pools, a tainted tenth), 600 running jobs filling most of it,
1,000 queued jobs of mixed shapes (1-8 GPUs per worker, gangs of 1-4, a few node selectors and priorities). A
fixed seed keeps it the same every run. The target is under 200 ms (median of 11 runs; the minimum is the cost
without interference from whatever else the machine runs).
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from elastic_operator.policy import (
    CPU,
    GPU,
    Job,
    Node,
    Phase,
    Resources,
    Settings,
    Snapshot,
    Taint,
    Toleration,
    Worker,
    plan,
)

OUT = Path(__file__).resolve().parent / "results" / "plan_speed.json"
NOW = 1_000_000.0


def scenario(nodes: int = 1000, queued: int = 1000, running: int = 600, seed: int = 7) -> Snapshot:
    rnd = random.Random(seed)
    node_list = []
    for i in range(nodes):
        taints = (Taint("dedicated", "infer"),) if i % 10 == 0 else ()
        node_list.append(
            Node(
                f"node-{i:04d}",
                Resources({GPU: 8, CPU: 64_000}),
                labels={"pool": "a" if i % 2 else "b"},
                taints=taints,
            )
        )
    free = {n.name: 8 for n in node_list if not n.taints}
    names = sorted(free)
    jobs = []
    for k in range(running):
        gpus = rnd.choice([1, 1, 2, 4, 8])
        want = rnd.randint(1, 8)
        workers = []
        for slot in range(want):
            start = rnd.randrange(len(names))
            for j in range(len(names)):
                name = names[(start + j) % len(names)]
                if free[name] >= gpus:
                    free[name] -= gpus
                    workers.append(Worker(slot, name))
                    break
        if not workers:
            continue
        jobs.append(
            Job(
                key=f"team/run-{k}",
                per_worker=Resources({GPU: gpus, CPU: 4000 * gpus}),
                min_workers=1,
                max_workers=max(len(workers), rnd.randint(1, 16)),
                priority=rnd.choice([0, 0, 1]),
                created=NOW - rnd.uniform(600, 86_400),
                phase=Phase.RUNNING,
                workers=tuple(workers),
                last_rescale=NOW - rnd.uniform(0, 3600),
                throughput={(len(workers), len({w.node for w in workers})): 100.0 * len(workers) ** 0.8},
                remaining_samples=1e5 * (1 + k % 97),  # as trainers report it: goodput weighs by time left
            )
        )
    for k in range(queued):
        gpus = rnd.choice([1, 1, 2, 4, 8])
        jobs.append(
            Job(
                key=f"team/q-{k}",
                per_worker=Resources({GPU: gpus, CPU: 4000 * gpus}),
                min_workers=rnd.randint(1, 4),
                max_workers=rnd.randint(4, 16),
                priority=rnd.choice([0, 0, 0, 1, 2]),
                created=NOW - rnd.uniform(0, 36_000),
                node_selector={"pool": "a"} if rnd.random() < 0.2 else {},
                tolerations=(Toleration("dedicated", "Exists"),) if rnd.random() < 0.1 else (),
            )
        )
    return Snapshot(nodes=tuple(node_list), jobs=tuple(jobs), settings=Settings())


def main() -> int:
    snapshot = scenario()
    plan(snapshot, NOW)  # warm-up
    times = []
    result = None
    for _ in range(11):
        started = time.perf_counter()
        result = plan(snapshot, NOW)
        times.append(time.perf_counter() - started)
    assert result is not None
    free_gpus = sum(8 for n in snapshot.nodes) - sum(
        j.per_worker.get(GPU, 0) * j.size for j in snapshot.jobs if j.phase is Phase.RUNNING
    )
    report = {
        "scenario": "1000 nodes x 8 GPUs, ~600 running jobs, 1000 queued jobs (see bench/plan_speed.py)",
        "nodes": len(snapshot.nodes),
        "queued_jobs": sum(1 for j in snapshot.jobs if j.phase is Phase.QUEUED),
        "running_jobs": sum(1 for j in snapshot.jobs if j.phase is Phase.RUNNING),
        "free_gpus_before": free_gpus,
        "decisions": len(result.decisions),
        "changes": {a: sum(1 for d in result.changes if d.action == a) for a in ("admit", "grow", "shrink", "requeue")},
        "plan_ms_min": round(1000 * min(times), 1),
        "plan_ms_median": round(1000 * statistics.median(times), 1),
        "plan_ms_max": round(1000 * max(times), 1),
        "target_ms": 200,
        "meets_target": statistics.median(times) < 0.2,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
