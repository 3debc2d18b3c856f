"""kopf adapters. Importing this package registers every handler with kopf's default registry."""

from elastic_operator.handlers import lifecycle, watches

__all__ = ["lifecycle", "watches"]
