"""Names shared by the cluster fixtures and the tests that use them."""

from __future__ import annotations

from collections.abc import Callable

TEST_LABEL = "elastic.training/test"  # label on every namespace and fake node a test creates, value: test id

NodeFactory = Callable[..., list[str]]
