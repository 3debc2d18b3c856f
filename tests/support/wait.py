"""Waiting on conditions with deadlines: tests never sleep to synchronise."""

from hack.devcluster import wait_for

__all__ = ["wait_for"]
