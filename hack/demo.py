"""`make demo`: the elastic story, for real, on one machine (see hack/story.py).

A real API server, scheduler and operator; one dev-only process node running pods as host processes with real
torch (the digits example) and real checkpoints. Prints a live table, a summary (accuracies, the training pause of
every rescale, the sweep's best parameters), and writes a plot to demo-output/demo.png.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from hack import story

OUT = Path(__file__).resolve().parents[1] / "demo-output"
ACCURACY_TARGET = 0.95


def show(rows: list[dict[str, Any]]) -> None:
    print(f"--- {rows[0]['t'] if rows else 0:.0f}s " + "-" * 90, flush=True)
    for r in sorted(rows, key=lambda r: r["job"]):
        acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"
        print(
            f"  {r['job']:10} {r['phase']:10} workers={r['workers']}  step={r['step'] or 0:<5} accuracy={acc:6} "
            f"{r['decision']}",
            flush=True,
        )


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    trials = (summary.get("sweep") or {}).get("trials") or []
    fig, axes = plt.subplots(1, 2 if trials else 1, figsize=(12 if trials else 8, 3.8), squeeze=False)
    ax = axes[0][0]
    for job in sorted({r["job"] for r in rows}):
        pts = [(r["t"], r["workers"]) for r in rows if r["job"] == job]
        ax.step([t for t, _ in pts], [w for _, w in pts], where="post", label=job)
    ax.set_xlabel("seconds")
    ax.set_ylabel("workers")
    ax.set_title("Workers per TrainingJob on one 4-GPU process node")
    ax.legend(fontsize="small")
    if trials:
        ax = axes[0][1]
        for t in trials:
            curve = sorted((int(k), v) for k, v in (t.get("intermediate") or {}).items())
            if curve:
                ax.plot([k for k, _ in curve], [v for _, v in curve], marker="o", label=f"trial {t['number']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (best so far)")
        ax.set_title("TuningSweep trials")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def report(summary: dict[str, Any]) -> bool:
    """Print the summary; True when every job succeeded, the trained ones reached the target and both a grow and
    a shrink happened with their pauses measured."""
    print("\nSummary")
    ok = True
    for name, status in sorted(summary["final"].items()):
        metrics = (status.get("progress") or {}).get("metrics") or {}
        accuracy = metrics.get("accuracy", float("nan"))
        rescales = status.get("rescales") or {}
        print(
            f"  {name:10} {status.get('phase'):9} accuracy {accuracy:.3f}  "
            f"grows {rescales.get('grow', 0)} shrinks {rescales.get('shrink', 0)}  restarts {status.get('restarts')}"
        )
        ok = ok and status.get("phase") == "Succeeded"
    base = summary["final"].get("base", {})
    for trained in ("base", "urgent"):  # the two jobs trained to the end (warmup and the trials are short)
        metrics = (summary["final"].get(trained, {}).get("progress") or {}).get("metrics") or {}
        ok = ok and metrics.get("accuracy", 0.0) >= ACCURACY_TARGET
    pauses = story.pauses(summary)
    print("  training pause per rescale (operator-measured: stop, checkpoint, restart, rendezvous):")
    for name, seconds in pauses:
        print(f"    {name:10} {seconds:5.1f} s")
    grows = (base.get("rescales") or {}).get("grow", 0)
    shrinks = (base.get("rescales") or {}).get("shrink", 0)
    ok = ok and grows >= 1 and shrinks >= 1 and len([p for p in pauses if p[0] == "base"]) >= grows + shrinks
    sweep = summary.get("sweep") or {}
    if sweep:
        best = sweep.get("bestTrial") or {}
        print(
            f"  sweep: {sweep.get('phase')}, trials {sweep.get('trialCounts')}, best trial {best.get('number')} "
            f"validation accuracy {best.get('value')} with {best.get('params')}"
        )
        ok = ok and sweep.get("phase") == "Succeeded"
    print("  the operator's events:")
    for _, name, reason, note in summary["events"]:
        print(f"    {name:10} {reason:16} {note}")
    return ok


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the operator, node and control plane
    print("Starting a local control plane, a process node (4 fake GPUs, real processes) and the operator ...")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, help="keep logs, checkpoints and the cluster's state here")
    args = parser.parse_args()
    if args.workdir is not None:
        print(f"Logs: {args.workdir}/operator.log, {args.workdir}/node/logs/, {args.workdir}/cluster/logs/")
        summary = story.run(args.workdir, show, sweep=True)
    else:
        with tempfile.TemporaryDirectory(prefix="elastic-demo-") as tmp:
            summary = story.run(Path(tmp), show, sweep=True)
    OUT.mkdir(exist_ok=True)
    plot(summary, OUT / "demo.png")
    ok = report(summary)
    print(f"\nDone in {summary['seconds']} s; plot: {OUT / 'demo.png'}; {'OK' if ok else 'NOT OK'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
