"""The short, seeded chaos run (`make chaos` is the long one): 25 random faults — operator SIGKILL and restart,
worker and rendezvous pod deletion, node removal and return, API server restart, conflicting status writes,
report floods with bad tokens — over 6 jobs and a sweep on kwok nodes, with the real operator. Fails when any
invariant failed: capacity over-committed, orphaned or duplicated pods, generations going backwards, progress
below the last checkpoint, operator memory past its bound, a job or sweep not finishing its training."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.harness import ChaosConfig, run_chaos
from hack.devcluster import DevCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_seeded_chaos_keeps_every_invariant(cluster: DevCluster, namespace: str, tmp_path: Path) -> None:
    config = ChaosConfig(
        seed=11, faults=25, jobs=6, sweeps=1, trials_per_sweep=2, nodes=4, steps=(100, 200), settle_timeout_s=240
    )
    result = run_chaos(cluster, namespace, config, tmp_path)
    print(result.table())
    assert sum(result.faults.values()) == 25
    assert all(count > 0 for count in result.faults.values()), result.faults  # every kind, at least once
    assert result.invariants["capacity_pods"]["passed"] > 0  # the watch saw pod events: the checks were not vacuous
    assert result.invariants["terminal"]["passed"] == sum(result.jobs.values()) + sum(result.sweeps.values())
    assert result.passed, result.table()
