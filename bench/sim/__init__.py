"""Discrete-event simulator that runs `elastic_operator.policy.plan()` unchanged over the Pollux workloads."""
