"""PURE: the TrainingJob lifecycle as data: status <-> runtime state, one reconciliation step, pod directives."""
