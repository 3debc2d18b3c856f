"""Suite-wide settings. Cluster fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI gets more examples and no deadline (a 2-core machine shared with a control plane is noisy).
settings.register_profile("default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")
