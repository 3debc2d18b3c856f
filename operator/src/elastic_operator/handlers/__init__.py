"""kopf adapters. Importing this package registers every handler with kopf's default registry. The view is fed
by our own informers (k8s/watch.py), not by kopf handlers: kopf's per-event cost dominated at scale."""

from elastic_operator.handlers import lifecycle

__all__ = ["lifecycle"]
