"""`make bench-scale`: the real operator, API server, scheduler and kwok with 1,000 fake GPU nodes and 2,000
TrainingJobs arriving in bursts. Measures admissions per second, capacity freed -> pods created (p50/p99), plan and
round durations (p50/p99, from the operator's histograms), the operator's memory and its API requests per decision.
Results: bench/results/scale.{json,md}. `--quick` runs a tenth of it (for development).

Shape: every node has 2 GPUs; every job is a gang of 2 one-GPU workers (minWorkers = maxWorkers, so freed capacity
goes to queued jobs, not to growing running ones); each worker pod exits 0 `--run-s` seconds after it runs (kwok
stage annotations). The first half of the jobs fits at once (only the operator limits how fast it is admitted); the
second half waits for capacity (how fast freed capacity is reused).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.scale import analysis
from bench.scale.watch import GROUP_PATH, Recorder, Session
from hack.devcluster import DevCluster, FakeNode, wait_for
from tests.support.operator import OperatorProcess

RESULTS = Path(__file__).resolve().parents[1] / "results"
GPU = "nvidia.com/gpu"
SELECTOR = ("bench", "scale")
NAMESPACE = "scale"


def job_manifest(name: str, workers: int, run_s: float) -> dict[str, Any]:
    return {
        "apiVersion": "elastic.training/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "minWorkers": workers,
            "maxWorkers": workers,
            "template": {
                "image": "registry.invalid/trainer:0",
                "command": ["python", "train.py"],
                "resources": {"limits": {GPU: "1"}},
                "nodeSelector": {SELECTOR[0]: SELECTOR[1]},
                "annotations": {
                    "kwok.elastic.training/exit-code": "0",
                    "kwok.elastic.training/exit-after": f"{run_s}s",
                },
            },
            "elasticity": {"rescaleCooldownSeconds": 0},
            "ttlSecondsAfterFinished": 3600,
        },
    }


def create_all(session: Session, path: str, bodies: list[dict[str, Any]], threads: int = 8) -> list[float]:
    """POST every body with a few threads; returns when each one was created (monotonic)."""

    def one(body: dict[str, Any]) -> float:
        status = session.post(path, body)
        if status not in (200, 201):
            raise RuntimeError(f"POST {path} {body['metadata']['name']}: HTTP {status}")
        return time.monotonic()

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, bodies))


def ready_nodes(session: Session) -> int:
    """Nodes Ready and free of NoSchedule/NoExecute taints. The node lifecycle controller removes the
    `node.kubernetes.io/not-ready` taint some seconds after a node turns Ready (at 1,000 nodes, a minute): until then
    neither the operator nor the scheduler may place anything there, and the bench measured the taint removal rate
    instead of the operator's admission rate."""
    items = session.get("/api/v1/nodes", labelSelector=f"{SELECTOR[0]}={SELECTOR[1]}").get("items") or []
    return sum(
        1
        for n in items
        if any(c["type"] == "Ready" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions") or [])
        and not any(t.get("effect") in ("NoSchedule", "NoExecute") for t in (n.get("spec") or {}).get("taints") or [])
    )


class MemorySampler(threading.Thread):
    """Samples a process's resident set size (VmRSS) twice a second; VmHWM is the kernel's own peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.stop = threading.Event()

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.peak_kib = max(self.peak_kib, self.status_kib("VmRSS"))
            except OSError:
                return


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(cluster: DevCluster, operator_pid: int) -> dict[str, float]:
    pids = {**cluster.state.pids, "operator": operator_pid, "bench": os.getpid()}
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def timelines(recorder: Recorder, workers: int) -> list[analysis.JobTimeline]:
    out = []
    for times in recorder.snapshot().values():
        if times.submitted is None:
            continue
        created = sorted(times.worker_created.values())
        done = sorted(times.worker_done.values())
        out.append(
            analysis.JobTimeline(
                submitted=times.submitted,
                admitted=times.admitted,
                pods_created=created[workers - 1] if len(created) >= workers else None,
                first_pod=created[0] if created else None,
                finished=done[workers - 1] if len(done) >= workers else None,
            )
        )
    return out


def write_timelines(path: Path, recorder: Recorder, workers: int, t0: float) -> None:
    """Per job: submitted, admitted, all workers created, all Running, all finished (None where never seen)."""

    def nth(times: dict[str, float]) -> float | None:
        ordered = sorted(times.values())
        return round(ordered[workers - 1] - t0, 3) if len(ordered) >= workers else None

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 3)

    rows = {
        name: [rel(j.submitted), rel(j.admitted), nth(j.worker_created), nth(j.worker_running), nth(j.worker_done)]
        for name, j in sorted(recorder.snapshot().items())
    }
    path.write_text(json.dumps({"columns": ["submitted", "admitted", "created", "running", "finished"], "jobs": rows}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 nodes, 200 jobs (development)")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--burst-interval-s", type=float, default=10.0)
    parser.add_argument("--run-s", type=float, default=60.0, help="how long each worker pod runs")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--out", default="scale", help="results file stem under bench/results")
    parser.add_argument("--keep-logs", default="", help="copy the operator log here")
    parser.add_argument(
        "--timelines", default="", help="write each job's times here (JSON, seconds from the first submission)"
    )
    parser.add_argument(
        "--kwok-pod-parallelism",
        type=int,
        default=32,
        help="pod stages kwok plays at once (kwok's default 4 plays 1,000 nodes' kubelets four pods at a time)",
    )
    parser.add_argument(
        "--kwok-lease-parallelism",
        type=int,
        default=64,
        help="node leases kwok renews at once (1,000 nodes need 100 renewals a second; kwok's default 4 made 26 a "
        "second on the busy API server, and nodes went NotReady while nothing was wrong with them)",
    )
    args = parser.parse_args()
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: the finally blocks stop the operator and the control plane,
    # which otherwise keep running (and loading the machine) after the bench is gone
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.nodes, args.jobs, args.run_s, args.burst_interval_s = 100, 200, 20.0, 5.0
        if args.out == "scale":
            args.out = "scale-quick"
    gpus_per_node, workers = 2, 2
    capacity_jobs = args.nodes * gpus_per_node // workers
    load_start = os.getloadavg()
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        started = time.monotonic()
        cluster = DevCluster.start(
            Path(tmp) / "cluster",
            kwok_pod_parallelism=args.kwok_pod_parallelism,
            kwok_lease_parallelism=args.kwok_lease_parallelism,
        )
        op: OperatorProcess | None = None
        try:
            cluster.apply_crds()
            session = Session(cluster)
            nodes = [
                FakeNode(f"scale-{i:04d}", gpus=gpus_per_node, cpu="32", labels={SELECTOR[0]: SELECTOR[1]}).manifest()
                for i in range(args.nodes)
            ]
            create_all(session, "/api/v1/nodes", nodes)
            wait_for(
                lambda: ready_nodes(session) >= args.nodes, timeout=600, interval=2, message="nodes Ready and untainted"
            )
            setup_s = time.monotonic() - started
            print(f"{args.nodes} nodes Ready and untainted after {setup_s:.0f}s", flush=True)
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            session.post("/api/v1/namespaces", namespace)
            wait_for(lambda: cluster.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0,
                     timeout=60, message="default ServiceAccount")  # fmt: skip
            log_path = Path(tmp) / "operator.log"
            op = OperatorProcess(cluster, log_path, ["--namespaces", NAMESPACE,
                                                     "--node-selector", f"{SELECTOR[0]}={SELECTOR[1]}"])  # fmt: skip
            op.start(timeout=180)
            assert op.proc is not None
            memory = MemorySampler(op.proc.pid)
            memory.start()
            recorder = Recorder(cluster, NAMESPACE)
            recorder.start()
            before = analysis.scrape(op.metrics())
            server_before = analysis.scrape(session.text("/metrics"))
            per_burst = -(-args.jobs // args.bursts)
            names = [f"job-{i:05d}" for i in range(args.jobs)]
            t0 = time.monotonic()
            cpu_before = cpu_by_process(cluster, op.proc.pid)
            burst_starts = []
            for b in range(args.bursts):
                time.sleep(max(0.0, t0 + b * args.burst_interval_s - time.monotonic()))  # the arrival schedule
                burst = names[b * per_burst : (b + 1) * per_burst]
                burst_starts.append(time.monotonic() - t0)
                done = create_all(
                    session,
                    f"{GROUP_PATH}/namespaces/{NAMESPACE}/trainingjobs",
                    [job_manifest(n, workers, args.run_s) for n in burst],
                )
                for n, at in zip(burst, done, strict=True):
                    recorder.submitted(n, at)
                loads.append(os.getloadavg()[0])
                print(f"burst {b + 1}: {len(burst)} jobs in {done[-1] - t0 - burst_starts[-1]:.1f}s", flush=True)

            def finished() -> bool:
                jobs = recorder.snapshot()
                succeeded = sum(1 for j in jobs.values() if j.phase == "Succeeded")
                failed = [n for n, j in jobs.items() if j.phase == "Failed"]
                if failed:
                    raise AssertionError(f"jobs failed: {failed[:5]}")
                return succeeded >= int(args.jobs)

            deadline = time.monotonic() + args.timeout_s
            timed_out = False
            while not finished():
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                time.sleep(5)  # progress report interval
                jobs = recorder.snapshot()
                loads.append(os.getloadavg()[0])
                print(f"t={time.monotonic() - t0:.0f}s admitted={sum(1 for j in jobs.values() if j.admitted)} "
                      f"succeeded={sum(1 for j in jobs.values() if j.phase == 'Succeeded')} "
                      f"rss={memory.peak_kib // 1024}MiB load={loads[-1]:.1f}", flush=True)  # fmt: skip
            makespan = time.monotonic() - t0
            cpu_after = cpu_by_process(cluster, op.proc.pid)
            after = analysis.scrape(op.metrics())
            server_after = analysis.scrape(session.text("/metrics"))
            peak_hwm_kib = memory.status_kib("VmHWM")
            memory.stop.set()
            op.stop()
            recorder.stop.set()
            if args.keep_logs:
                Path(args.keep_logs).write_bytes(log_path.read_bytes())
        finally:
            if op is not None:
                op.kill()  # a no-op after op.stop(); an interrupted run must not leave it running
            cluster.stop()
    load_end = os.getloadavg()
    lines = timelines(recorder, workers)
    if args.timelines:
        write_timelines(Path(args.timelines), recorder, workers, t0)
    saturated = analysis.saturation_time(lines, capacity_jobs)
    rate, rate_n = analysis.sustained_admission_rate(lines, saturated)
    lat = analysis.capacity_to_pods(lines, saturated)
    lags = analysis.admission_lags(lines, saturated)
    admitted = [j.admitted for j in lines if j.admitted is not None]
    requests = analysis.delta(after, before, "elastic_training_api_requests_total")
    decisions = analysis.delta(after, before, "elastic_training_decisions_total")
    by_call: dict[str, float] = {}
    for (name, labels), value in after.items():
        if name == "elastic_training_api_requests_total":
            key = " ".join(v for _, v in labels)
            by_call[key] = value - before.get((name, labels), 0.0)

    def r(x: float | None, nd: int = 3) -> float | None:
        return None if x is None else round(x, nd)

    result: dict[str, Any] = {
        "config": {
            **vars(args),
            "gpus_per_node": gpus_per_node,
            "workers_per_job": workers,
            "capacity_jobs": capacity_jobs,
            "planner_interval_s": 1.0,
            "planner_debounce_s": 0.1,
        },
        "timed_out": timed_out,
        "jobs_submitted": len(lines),
        "jobs_admitted": len(admitted),
        "jobs_succeeded": sum(1 for j in recorder.snapshot().values() if j.phase == "Succeeded"),
        "makespan_s": r(makespan, 1),
        "saturated_at_s": r(None if saturated is None else saturated - t0, 1),
        "admissions_per_s_sustained": r(rate, 1),
        "admissions_counted": rate_n,
        "admissions_per_s_overall": r(len(admitted) / (max(admitted) - t0), 1) if admitted else None,
        "admissions_per_5s": analysis.rate_timeline(admitted, t0),
        "admission_lag_s": {
            "n": len(lags),
            "p50": r(analysis.percentile(lags, 0.5)),
            "p99": r(analysis.percentile(lags, 0.99)),
        },
        "capacity_to_pods_s": {
            "n": len(lat),
            "p50": r(analysis.percentile(lat, 0.5)),
            "p99": r(analysis.percentile(lat, 0.99)),
            "max": r(max(lat) if lat else None),
        },
        "plan_duration_s": {
            "rounds": analysis.delta(after, before, "elastic_training_plan_duration_seconds_count"),
            "p50": r(analysis.histogram_quantile(after, before, "elastic_training_plan_duration_seconds", 0.5)),
            "p99": r(analysis.histogram_quantile(after, before, "elastic_training_plan_duration_seconds", 0.99)),
        },
        "round_duration_s": {
            "p50": r(analysis.histogram_quantile(after, before, "elastic_training_round_duration_seconds", 0.5)),
            "p99": r(analysis.histogram_quantile(after, before, "elastic_training_round_duration_seconds", 0.99)),
        },
        "operator_memory_mib": {
            "peak_rss_sampled": round(memory.peak_kib / 1024, 1),
            "vm_hwm": round(peak_hwm_kib / 1024, 1),
        },
        "api_requests": requests,
        "decisions": decisions,
        "api_requests_per_decision": r(requests / decisions, 2) if decisions else None,
        "api_requests_by_call": dict(sorted(by_call.items(), key=lambda kv: -kv[1])),
        "api_server_requests_by_call": analysis.requests_by_call(server_after, server_before),
        "api_server_watch_events_by_kind": analysis.by_label(
            server_after, server_before, "apiserver_watch_events_total", "resource"
        ),
        "nodes_left_ready_during_run": recorder.nodes_not_ready,
        "watch_events_seen_by_bench": recorder.events,
        "cpu_seconds_by_process": {
            name: round(cpu_after[name] - cpu_before[name], 1)
            for name in sorted(cpu_after, key=lambda n: cpu_before[n] - cpu_after[n])
        },
        "cluster_setup_s": round(setup_s, 1),
        "load_average": {
            "start": [round(x, 2) for x in load_start],
            "end": [round(x, 2) for x in load_end],
            "during_max_1m": round(max(loads), 2) if loads else None,
            "during_mean_1m": round(sum(loads) / len(loads), 2) if loads else None,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "targets": {"admissions_per_s": 20, "capacity_to_pods_p99_s": 5, "memory_mib": 500},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.out}.md").write_text(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k != "admissions_per_5s"}, indent=2))
    return 1 if timed_out else 0


def markdown(res: dict[str, Any]) -> str:
    c = res["config"]
    lat, plan, rnd = res["capacity_to_pods_s"], res["plan_duration_s"], res["round_duration_s"]
    lag = res.get("admission_lag_s") or {"n": 0, "p50": None, "p99": None}
    mem = res["operator_memory_mib"]
    load = res["load_average"]

    def ok(value: float | None, target: float, higher: bool = False) -> str:
        if value is None:
            return "n/a"
        return "yes" if (value >= target if higher else value < target) else "**no**"

    return (
        "# Scale: the real operator on kwok nodes, jobs arriving in bursts\n\n"
        f"{c['nodes']} kwok nodes x {c['gpus_per_node']} GPUs; {c['jobs']} TrainingJobs (gangs of "
        f"{c['workers_per_job']} one-GPU workers, minWorkers = maxWorkers) in {c['bursts']} bursts "
        f"{c['burst_interval_s']:g} s apart; every worker pod exits 0 {c['run_s']:g} s after it runs. "
        f"At most {c['capacity_jobs']} jobs fit at once, so the first half is admitted as fast as the operator can and "
        "the second half waits for capacity. Real etcd, API server, scheduler, controller-manager, kwok; operator "
        f"with planner interval {c['planner_interval_s']:g} s, debounce {c['planner_debounce_s']:g} s. Times are "
        "when the bench's own watches saw each change (bench/scale/analysis.py defines each figure). kwok plays "
        f"{c.get('kwok_pod_parallelism', 4)} pod stages and renews {c.get('kwok_lease_parallelism', 4)} node leases "
        "at once (its defaults are 4 and 4: one kwok process plays every node's kubelet).\n\n"
        "| figure | measured | target | met |\n|---|---|---|---|\n"
        f"| admissions/s until saturation ({res['admissions_counted']} jobs) | {res['admissions_per_s_sustained']} "
        f"| >= 20 | {ok(res['admissions_per_s_sustained'], 20, higher=True)} |\n"
        f"| admissions/s over the whole run | {res['admissions_per_s_overall']} | | |\n"
        f"| submission -> admission p50 / p99 (s, n={lag['n']}) | {lag['p50']} / {lag['p99']} | | |\n"
        f"| capacity freed -> pods created p50 / p99 (s, n={lat['n']}) | {lat['p50'] or 'n/a'} / {lat['p99'] or 'n/a'} "
        "| p99 < 5 "
        f"| {ok(lat['p99'], 5)} |\n"
        f"| plan duration p50 / p99 (s, {plan['rounds']:.0f} rounds) | {plan['p50']} / {plan['p99']} | | |\n"
        f"| round duration p50 / p99 (s) | {rnd['p50']} / {rnd['p99']} | | |\n"
        f"| operator memory peak (VmHWM, MiB) | {mem['vm_hwm']} | < 500 | {ok(mem['vm_hwm'], 500)} |\n"
        f"| API requests per decision | {res['api_requests_per_decision']} ({res['api_requests']:.0f} / "
        f"{res['decisions']:.0f}) | | |\n"
        f"| all jobs Succeeded after (s) | {res['makespan_s']} ({res['jobs_succeeded']}/{c['jobs']}) | | |\n\n"
        + (
            "The cluster never filled up: admissions, not capacity, were the limit all along, so no 'capacity freed' "
            "event had a job waiting for it (n=0) and 'until saturation' covers the whole run.\n\n"
            if res["saturated_at_s"] is None
            else ""
        )
        + (
            f"Timed out after {c['timeout_s']:g} s with {res['jobs_succeeded']} of {c['jobs']} jobs Succeeded: "
            "the figures cover what happened until then.\n\n"
            if res["timed_out"]
            else ""
        )
        + f"Machine: {res['machine']['cpus']} CPUs ({res['machine']['platform']}, Python {res['machine']['python']}), "
        "shared with other work while this ran: load average (1 min) "
        f"{load['start'][0]} at the start, mean {load['during_mean_1m']} / max {load['during_max_1m']} during, "
        f"{load['end'][0]} at the end. Everything (control plane, kwok, operator, bench) ran on these cores.\n\n"
        + (
            "CPU seconds during the run (submission of the first job to the last Succeeded), by process: "
            + ", ".join(f"{k} {v:g}" for k, v in res["cpu_seconds_by_process"].items())
            + f" (of {res['makespan_s'] * res['machine']['cpus']:.0f} available).\n\n"
            if res.get("cpu_seconds_by_process")
            else ""
        )
        + "API requests by call: "
        + ", ".join(f"{k} {v:.0f}" for k, v in list(res["api_requests_by_call"].items())[:8])
        + " (every request of the operator's client, its watch streams included).\n"
        + (
            "\nThe API server's own count, every client (kwok's kubelets and leases, the scheduler, the "
            "controller-manager, the operator, the bench): "
            + ", ".join(f"{k} {v:.0f}" for k, v in list(res["api_server_requests_by_call"].items())[:12])
            + ".\n"
            if res.get("api_server_requests_by_call")
            else ""
        )
        + (
            f"\nNodes that left Ready during the run: {res['nodes_left_ready_during_run']} (a healthy simulated "
            "cluster has none; each takes its GPUs out of the plan until it is back).\n"
            if "nodes_left_ready_during_run" in res
            else ""
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
