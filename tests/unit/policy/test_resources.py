"""Kubernetes quantities in canonical units, and the Resources mapping."""

from __future__ import annotations

import pytest

from elastic_operator.policy import CPU, GPU, MEMORY, Resources, parse_quantity


@pytest.mark.parametrize(
    ("resource", "text", "expected"),
    [
        (CPU, "500m", 500),
        (CPU, "2", 2000),
        (CPU, "0.5", 500),
        (CPU, "1.2345", 1235),  # rounds up, like a request
        (CPU, "100u", 1),
        (CPU, 3, 3000),
        (MEMORY, "4Gi", 4 * 2**30),
        (MEMORY, "1.5Gi", 3 * 2**29),
        (MEMORY, "128974848", 128974848),
        (MEMORY, "129e6", 129_000_000),
        (MEMORY, "129M", 129_000_000),
        (MEMORY, "123Mi", 123 * 2**20),
        (MEMORY, "1k", 1000),
        (MEMORY, "1Ki", 1024),
        (MEMORY, "1E", 10**18),  # exa, not an exponent
        (MEMORY, "1e3", 1000),
        (MEMORY, "1E3", 1000),
        (GPU, "1", 1),
        (GPU, "8", 8),
        ("pods", "110", 110),
        ("ephemeral-storage", "10Gi", 10 * 2**30),
        (MEMORY, "+1", 1),
        (MEMORY, ".5Ki", 512),
    ],
)
def test_parse_quantity(resource: str, text: str | int, expected: int) -> None:
    assert parse_quantity(resource, text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1Kb", "1.2.3", "Gi", "-1", "1 Gi", "1ee3"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(MEMORY, text)


def test_resources_arithmetic_and_identity() -> None:
    a = Resources.of(cpu="500m", memory="1Gi", gpus=1)
    b = Resources({CPU: 500, MEMORY: 2**30, GPU: 1})
    assert a == b and hash(a) == hash(b)
    assert dict(a + a) == {CPU: 1000, MEMORY: 2**31, GPU: 2}
    assert (a - a) == Resources() and len(a - a) == 0
    assert 3 * a == a * 3 == a + a + a
    assert a.fits_in({CPU: 500, MEMORY: 2**30, GPU: 1})
    assert not a.fits_in({CPU: 499, MEMORY: 2**30, GPU: 1})
    assert a.times_in({CPU: 4000, MEMORY: 2**32, GPU: 3}) == 3
    assert Resources().times_in({}, cap=7) == 7
    assert Resources.parse({"cpu": "2", "nvidia.com/gpu": "4"}) == {CPU: 2000, GPU: 4}
