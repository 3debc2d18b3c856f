"""`make bench-drain`: 50 TrainingJobs queued on 8 kwok nodes x 4 GPUs, each worker finishing after 3 s; how long
until every job Succeeded, with the real operator, API server and scheduler. Results: bench/results/drain.{json,md}."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hack.devcluster import DevCluster, FakeNode, wait_for
from tests.support.drain import run_drain
from tests.support.operator import OperatorProcess

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--run-s", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        nodes = [FakeNode(f"drain-{i}", gpus=4, labels={"bench": "drain"}) for i in range(args.nodes)]
        cluster = DevCluster.start(Path(tmp) / "cluster", nodes)
        try:
            cluster.apply_crds()
            for rep in range(args.reps):
                ns = f"drain-{rep}"
                cluster.kubectl("create", "namespace", ns)
                wait_for(lambda ns=ns: cluster.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0,
                         timeout=60, message="default ServiceAccount")  # fmt: skip
                op = OperatorProcess(cluster, Path(tmp) / f"operator-{rep}.log",
                                     ["--namespaces", ns, "--node-selector", "bench=drain"])  # fmt: skip
                op.start()
                try:
                    runs.append(run_drain(cluster, ns, args.jobs, args.run_s, timeout=900))
                finally:
                    op.stop()
                cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=120s", check=False)
                print(runs[-1], flush=True)
        finally:
            cluster.stop()
    drains = sorted(r["drain_s"] for r in runs)
    # ideal: GPU-seconds of work over capacity, if every job ran at its minimum and nothing waited
    ideal = args.jobs * args.run_s / (args.nodes * 4)
    result = {"config": vars(args), "runs": runs, "median_drain_s": drains[len(drains) // 2], "lower_bound_s": ideal}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "drain.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "drain.md").write_text(
        "# Drain: jobs queued on kwok nodes until all Succeeded\n\n"
        f"{args.jobs} jobs (min 1, max 4 workers of 1 GPU), {args.nodes} nodes x 4 GPUs, each worker pod exits 0 "
        f"{args.run_s:g} s after it runs. Real API server, scheduler, operator (planner interval 1 s).\n\n"
        "| run | drain (s) | first admission (s) |\n|---|---|---|\n"
        + "".join(f"| {i + 1} | {r['drain_s']} | {r['first_admission_s']} |\n" for i, r in enumerate(runs))
        + f"\nMedian {result['median_drain_s']} s.\n"
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
