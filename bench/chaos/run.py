"""`make chaos`: at least 200 seeded random faults over 20+ jobs and 2 sweeps on a fresh local control plane with
kwok nodes, invariants checked all along. Prints the table of faults injected and invariant checks; writes
bench/results/chaos.{json,md}; exits 1 when any invariant failed.

    make chaos                                   # seed 1, 200 faults, 20 jobs, 2 sweeps
    python -m bench.chaos.run --seed 7 --faults 50 --jobs 8 --sweeps 1 --no-results
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.chaos.harness import ChaosConfig, ChaosResult, run_chaos
from hack.devcluster import DevCluster, wait_for

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=20, help="stand-alone TrainingJobs (sweep trials come on top)")
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--trials", type=int, default=4, help="trials per sweep")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--no-results", action="store_true", help="do not write bench/results/chaos.*")
    parser.add_argument("--keep", type=Path, help="keep the cluster's and operator's logs in this folder")
    args = parser.parse_args(argv)
    config = ChaosConfig(
        seed=args.seed, faults=args.faults, jobs=args.jobs, sweeps=args.sweeps, trials_per_sweep=args.trials,
        nodes=args.nodes,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        workdir = args.keep.resolve() if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = DevCluster.start(workdir / "cluster")
        try:
            cluster.apply_crds()
            cluster.kubectl("create", "namespace", "chaos")
            wait_for(lambda: cluster.kubectl("get", "sa", "default", "-n", "chaos", check=False).returncode == 0,
                     timeout=60, message="default ServiceAccount")  # fmt: skip
            result = run_chaos(cluster, "chaos", config, workdir)
        finally:
            cluster.stop()
    print(result.table())
    print(
        f"\n{sum(result.jobs.values())} jobs {result.jobs}, sweeps {result.sweeps}; {result.duration_s} s "
        f"({result.settle_s} s to settle after the last fault); operator RSS max {result.rss_mib['max']} MiB"
    )
    if not args.no_results:
        write_results(result)
    return 0 if result.passed else 1


def write_results(result: ChaosResult) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    (RESULTS / "chaos.json").write_text(json.dumps(data, indent=2) + "\n")
    c = result.config
    (RESULTS / "chaos.md").write_text(
        "# Chaos: seeded faults against the operator, invariants checked all along\n\n"
        f"`make chaos` (seed {c.seed}): {sum(result.faults.values())} faults over {c.jobs} TrainingJobs and "
        f"{c.sweeps} TuningSweeps ({c.trials_per_sweep} trials each) on {c.nodes} kwok nodes x {c.gpus_per_node} "
        "GPUs; real kube-apiserver, scheduler, controller-manager and operator process; simulated trainers play "
        "every worker through the report endpoint. Measured on the 2-core dev machine.\n\n"
        f"{result.table()}\n\n"
        f"Jobs (trials included) by final phase: {result.jobs}; sweeps: {result.sweeps}. Nodes returned: "
        f"{result.node_returns}. Run {result.duration_s} s, of which {result.settle_s} s to settle after the last "
        f"fault. Operator RSS: max {result.rss_mib['max']} MiB, last {result.rss_mib['last']} MiB "
        f"({result.rss_mib['samples']} samples, bound {result.rss_mib['bound']:.0f} MiB). Trainer reports: "
        f"{result.reports['ok']} answered, {result.reports['failed']} not (operator or API server down).\n\n"
        f"Result: {'all invariants held' if result.passed else 'INVARIANTS FAILED'}.\n"
    )


if __name__ == "__main__":
    sys.exit(main())
