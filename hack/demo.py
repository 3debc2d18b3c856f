"""`make demo`: the elastic story, for real, on one machine (see hack/story.py).

A real API server, scheduler and operator; one dev-only process node running pods as host processes with real
torch (the digits example) and real checkpoints. Prints a live table, a summary, and writes a plot of workers over
time per job to demo-output/workers.png. Not yet in it: a TuningSweep and the grow-back after the urgent job (see
the project's demo issue).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hack import story

OUT = Path(__file__).resolve().parents[1] / "demo-output"


def show(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"
        print(
            f"{r['t']:7.1f}s  {r['job']:7} {r['phase']:10} workers={r['workers']}  step={r['step']}  "
            f"accuracy={acc}  {r['decision']}",
            flush=True,
        )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for job in sorted({r["job"] for r in rows}):
        pts = [(r["t"], r["workers"]) for r in rows if r["job"] == job]
        ax.step([t for t, _ in pts], [w for _, w in pts], where="post", label=job)
    ax.set_xlabel("seconds")
    ax.set_ylabel("workers")
    ax.set_title("Elastic TrainingJobs on one 4-GPU process node")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    print("Starting a local control plane, a process node (4 fake GPUs, real processes) and the operator ...")
    with tempfile.TemporaryDirectory(prefix="elastic-demo-") as tmp:
        summary = story.run(Path(tmp), show)
    OUT.mkdir(exist_ok=True)
    plot(summary["rows"], OUT / "workers.png")
    print("\nSummary")
    for name, status in sorted(summary["final"].items()):
        metrics = (status.get("progress") or {}).get("metrics") or {}
        print(
            f"  {name}: {status.get('phase')}, accuracy {metrics.get('accuracy', float('nan')):.3f}, "
            f"rescales {status.get('rescales')}, restarts {status.get('restarts')}"
        )
    print("  events:")
    for name, reason, note in summary["events"]:
        print(f"    {name:7} {reason:12} {note}")
    print(f"Done in {summary['seconds']} s; plot: {OUT / 'workers.png'}")
    ok = all(s.get("phase") == "Succeeded" for s in summary["final"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
