"""Rescale pauses: the operator-coordinated generations vs torchrun's own elastic mode."""
