"""The HTTP endpoint trainer pods report to; it answers each report with the pod's current directive."""
