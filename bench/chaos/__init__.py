"""`make chaos`: seeded fault injection against the real operator on the local control plane, with invariants
checked all along (see bench/chaos/harness.py)."""
