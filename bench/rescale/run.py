"""Rescale pauses on one host: our launcher (fixed-size generations, prepared while the old one trains) vs
torchrun's own elastic mode (``--nnodes=1:3``, defaults), in the same run.

pause = time from the last training step at the old size to the first step at the new size (from rank 0's step log).

    python -m bench.rescale.run [--reps 10] [--baseline-reps 3] [--random 30] [--skip-baseline]

Scenarios (ours): planned grow 2->3, planned shrink 3->2, unplanned loss 3->2 (SIGKILL of a whole pod; the test
operator opens the next generation as soon as the pod's process is gone, i.e. kubelet/operator detection latency is
not included), and a mode of random membership changes (sizes 1..3, planned or unplanned) that must never hang.
torchrun: 2 agents start, a 3rd joins (grow), one is SIGTERMed (shrink), one is SIGKILLed (loss); a change that does
not reach a step at the new size within --timeout counts as a hang (null).
Writes bench/results/rescale.json and bench/results/rescale.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic_trainer.testing import (
    FakeOperator,
    free_port,
    kill_all,
    kill_tree,
    spawn_launcher,
    spawn_rendezvous,
    wait_for,
)

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEP_DELAY = "0.05"


def read_steps(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def pause(path: Path, since: float, old: int, new: int, timeout: float) -> float | None:
    """Seconds between the last step at size ``old`` and the first step at size ``new`` after ``since``."""
    end = time.time() + timeout
    while time.time() < end:
        ev = [e for e in read_steps(path) if e.get("event") == "step"]
        first = next((e for e in ev if e["t"] > since and e["world"] == new), None)
        if first is not None:
            before = [e for e in ev if e["t"] < first["t"] and e["world"] == old]
            return round(first["t"] - before[-1]["t"], 3) if before else None
        time.sleep(0.1)
    return None


def digits_command(tmp: Path) -> list[str]:
    # --device cpu: the benchmark's "pods" share one host (one GPU there would be picked by all of them for NCCL)
    return [
        "python", "-m", "elastic_trainer.examples.digits", "--device", "cpu", "--epochs", "100000",
        "--step-delay", STEP_DELAY,
        "--checkpoint-every", "20", "--step-log", str(tmp / "steps.jsonl"),
    ]  # fmt: skip


@dataclass
class Ours:
    tmp: Path
    op: FakeOperator
    pods: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    n: int = 0

    def spawn(self) -> str:
        self.n += 1
        pod = f"w{self.n}"
        self.pods[pod] = spawn_launcher(
            self.op, pod, digits_command(self.tmp), self.tmp / "ckpt", self.tmp / f"{pod}.log"
        )
        wait_for(lambda: self.op.state_of(pod) is not None, 60, f"{pod} to report")
        return pod

    def go(self, members: list[str], exiting: tuple[str, ...] = (), timeout: float = 120) -> int:
        g = self.op.open_generation(members, exiting)
        self.members = members
        wait_for(lambda: self.op.all_in(members, "running", g), timeout, f"generation {g} running")
        return g

    def change(self, kind: str, target: int, timeout: float) -> float | None:
        """Change to ``target`` pods: "planned" (grow with new pods / shrink with exit) or "loss" (SIGKILL)."""
        old = len(self.members)
        if kind == "planned" and target > old:
            new = [self.spawn() for _ in range(target - old)]
            t0 = time.time()
            self.op.open_generation([*self.members, *new])
            self.members = [*self.members, *new]
        elif kind == "planned":
            leaving = self.members[target:]
            t0 = time.time()
            self.op.open_generation(self.members[:target], exiting=tuple(leaving))
            self.members = self.members[:target]
        else:
            victims = random.sample(self.members, old - target)
            for v in victims:
                kill_tree(self.pods[v])
            t0 = time.time()
            for v in victims:
                self.pods[v].wait(timeout=10)
            self.members = [m for m in self.members if m not in victims]
            self.op.open_generation(self.members)
        p = pause(self.tmp / "steps.jsonl", t0, old, target, timeout)
        if p is not None:
            g = self.op.generation
            wait_for(lambda: self.op.all_in(self.members, "running", g), timeout, "running reports")
        for pod, proc in list(self.pods.items()):
            if pod not in self.members and proc.poll() is None and kind == "planned":
                proc.wait(timeout=60)
        return p


def run_ours(reps: int, changes: int, timeout: float, seed: int) -> dict[str, Any]:
    random.seed(seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rescale-ours-"))
    port = free_port()
    rdzv = spawn_rendezvous(port, tmp / "rendezvous.log")
    op = FakeOperator(rdzv_endpoint=f"127.0.0.1:{port}").start()
    job = Ours(tmp, op)
    res: dict[str, list[float | None]] = {"planned_grow": [], "planned_shrink": [], "unplanned_loss": []}
    rand: list[dict[str, Any]] = []
    try:
        first = [job.spawn(), job.spawn()]
        t0 = time.time()
        job.go(first)
        res_start = round(time.time() - t0, 2)
        for i in range(reps):
            res["planned_grow"].append(job.change("planned", 3, timeout))
            res["planned_shrink"].append(job.change("planned", 2, timeout))
            job.change("planned", 3, timeout)
            res["unplanned_loss"].append(job.change("loss", 2, timeout))
            print(f"ours rep {i + 1}: " + ", ".join(f"{k}={v[-1]}" for k, v in res.items()), flush=True)
        for i in range(changes):
            old = len(job.members)
            target = random.choice([s for s in (1, 2, 3) if s != old])
            kind = "loss" if target < old and random.random() < 0.5 else "planned"
            p = job.change(kind, target, timeout)
            rand.append({"from": old, "to": target, "kind": kind, "pause_s": p})
            print(f"random {i + 1}: {old}->{target} {kind}: {p}", flush=True)
            if p is None:
                break
    finally:
        kill_all([*job.pods.values(), rdzv])
        op.stop()
    return {"first_start_2_pods_s": res_start, "pauses": res, "random": rand, "logs": str(tmp)}


def torchrun_agent(port: int, tmp: Path, i: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1:3", "--nproc-per-node=1", "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=bench", "--max-restarts=20", "--monitor-interval=0.5",
        *digits_command(tmp)[1:],
    ]  # fmt: skip
    env = {**os.environ, "ELASTIC_CHECKPOINT_DIR": str(tmp / "ckpt"), "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if k != "ELASTIC_CONTROL_DIR"}
    with open(tmp / f"agent{i}.log", "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run_torchrun(reps: int, timeout: float) -> dict[str, Any]:
    out: dict[str, list[float | None]] = {"first_start": [], "planned_grow": [], "planned_shrink": [],
                                          "unplanned_loss": []}  # fmt: skip
    for i in range(reps):
        tmp = Path(tempfile.mkdtemp(prefix="bench-rescale-torchrun-"))
        port = free_port()
        steps = tmp / "steps.jsonl"
        agents = [torchrun_agent(port, tmp, 0)]
        time.sleep(0.5)  # the first agent hosts the store
        agents.append(torchrun_agent(port, tmp, 1))
        t0 = time.time()
        try:
            first = pause_or_none(steps, t0, 2, timeout)
            out["first_start"].append(first)
            grow = shrink = loss = None
            if first is not None:
                t1 = time.time()
                agents.append(torchrun_agent(port, tmp, 2))
                grow = pause(steps, t1, 2, 3, timeout)
            if grow is not None:
                t2 = time.time()
                agents[2].send_signal(signal.SIGTERM)  # the nearest thing to a planned shrink
                shrink = pause(steps, t2, 3, 2, timeout)
            if shrink is not None:
                agents.append(torchrun_agent(port, tmp, 3))
                if pause(steps, time.time(), 2, 3, timeout) is not None:
                    t3 = time.time()
                    kill_tree(agents[3])  # not the agent that hosts the store
                    loss = pause(steps, t3, 3, 2, timeout)
            out["planned_grow"].append(grow)
            out["planned_shrink"].append(shrink)
            out["unplanned_loss"].append(loss)
            print(f"torchrun rep {i + 1}: start={first} grow={grow} shrink={shrink} loss={loss}", flush=True)
        finally:
            kill_all(agents)
    return {"pauses": out}


def pause_or_none(steps: Path, since: float, world: int, timeout: float) -> float | None:
    end = time.time() + timeout
    while time.time() < end:
        ev = [e for e in read_steps(steps) if e.get("event") == "step" and e["world"] == world]
        if ev:
            return round(float(ev[0]["t"]) - since, 2)
        time.sleep(0.1)
    return None


def summary(values: list[float | None]) -> dict[str, Any]:
    ok = [v for v in values if v is not None]
    return {
        "n": len(values),
        "hangs": len(values) - len(ok),
        "median_s": round(statistics.median(ok), 2) if ok else None,
        "max_s": round(max(ok), 2) if ok else None,
        "values": values,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--baseline-reps", type=int, default=3)
    p.add_argument("--random", type=int, default=30, help="random membership changes (0: skip)")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    import torch

    started = time.time()
    ours = run_ours(a.reps, a.random, a.timeout, a.seed)
    base = run_torchrun(a.baseline_reps, a.timeout) if not a.skip_baseline else {"pauses": {}}
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "config": {**vars(a), "step_delay_s": float(STEP_DELAY), "model": "digits MLP, gloo, 1 process per pod"},
        "ours": {k: summary(v) for k, v in ours["pauses"].items()}
        | {"first_start_2_pods_s": ours["first_start_2_pods_s"]},
        "ours_random": {
            "changes": len(ours["random"]),
            "hangs": sum(1 for r in ours["random"] if r["pause_s"] is None),
            "summary": summary([r["pause_s"] for r in ours["random"]]),
            "changes_detail": ours["random"],
        },
        "torchrun_elastic_defaults": {k: summary(v) for k, v in base["pauses"].items()},
        "wall_s": round(time.time() - started, 1),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rescale.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "rescale.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    def cell(s: dict[str, Any] | None) -> str:
        if not s:
            return "not run"
        med, mx = s["median_s"], s["max_s"]
        core = f"{med} / {mx} s" if med is not None else "—"
        return f"{core} (n={s['n']}, hangs={s['hangs']})"

    o, b = r["ours"], r["torchrun_elastic_defaults"]
    m = r["machine"]
    lines = [
        "# Rescale pauses (last step at the old size -> first step at the new size)",
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}; digits MLP (gloo, one process per "
        f"pod, {r['config']['step_delay_s']} s simulated compute per step). Cells: median / max.",
        "",
        "| scenario | elastic-trainer generations | torchrun `--nnodes=1:3` (defaults) |",
        "|---|---|---|",
        f"| planned grow 2->3 | {cell(o.get('planned_grow'))} | {cell(b.get('planned_grow'))} |",
        f"| planned shrink 3->2 | {cell(o.get('planned_shrink'))} | {cell(b.get('planned_shrink'))} (SIGTERM) |",
        f"| unplanned loss 3->2 (SIGKILL) | {cell(o.get('unplanned_loss'))} | {cell(b.get('unplanned_loss'))} |",
        f"| first start, 2 pods | {o.get('first_start_2_pods_s')} s (to all running) | "
        f"{cell(b.get('first_start'))} (to first step) |",
        "",
        f"Random membership changes (sizes 1..3, planned or SIGKILL): {r['ours_random']['changes']} changes, "
        f"{r['ours_random']['hangs']} hangs, pause {cell(r['ours_random']['summary'])}.",
        "",
        "Unplanned loss: the stand-in operator opens the next generation as soon as the killed pod's process is gone;",
        "in a cluster add the time the operator needs to see the pod fail. torchrun cells after a hang are not run",
        "(the job is dead), so they count as hangs too.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
