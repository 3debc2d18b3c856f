"""Resource amounts as immutable integer mappings, and the Kubernetes quantity parser.

Canonical units: `cpu` in millicores, `memory` (and `ephemeral-storage`, `hugepages-*`) in bytes, everything else a
plain count (`nvidia.com/gpu`, `pods`). Quantities that do not divide evenly round up, as the scheduler does for
requests, so the policy never under-counts what a pod asks for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from math import ceil

CPU = "cpu"
MEMORY = "memory"
GPU = "nvidia.com/gpu"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 10**3), "": Fraction(1)}
_DECIMAL.update({"k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12)})
_DECIMAL.update({"P": Fraction(10**15), "E": Fraction(10**18)})
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(resource: str, value: str | int | float) -> int:
    """Parse a Kubernetes quantity ("500m", "2", "4Gi", "1e3", "1.5") into `resource`'s canonical integer unit.

    `cpu` comes back in millicores ("500m" -> 500, "2" -> 2000); every other resource in base units ("4Gi" ->
    4294967296, "1e3" -> 1000). Fractions round up. Raises ValueError for anything Kubernetes would reject.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid quantity for {resource}: {value!r}")
    if isinstance(value, int):
        amount = Fraction(value)
    elif isinstance(value, float):
        amount = Fraction(Decimal(repr(value)))
    else:
        text = value.strip()
        match = _QUANTITY.match(text)
        if not match:
            raise ValueError(f"invalid quantity for {resource}: {value!r}")
        number, exponent, suffix = match.groups()
        try:
            amount = Fraction(Decimal(number))
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
            raise ValueError(f"invalid quantity for {resource}: {value!r}") from exc
        if exponent:
            amount *= Fraction(10) ** int(exponent[1:])
        elif suffix in _BINARY:
            amount *= _BINARY[suffix]
        else:
            amount *= _DECIMAL[suffix or ""]
    if amount < 0:
        raise ValueError(f"negative quantity for {resource}: {value!r}")
    if resource == CPU:
        amount *= 1000
    return ceil(amount)


class Resources(Mapping[str, int]):
    """An immutable, hashable mapping resource name -> amount in canonical units. Zero amounts are dropped, so
    `Resources()` is "nothing" and two equal amounts compare equal however they were built."""

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        merged: dict[str, int] = {}
        for name, amount in pairs:
            merged[name] = merged.get(name, 0) + int(amount)
        self._items: dict[str, int] = {k: merged[k] for k in sorted(merged) if merged[k] != 0}
        self._hash: int | None = None

    @classmethod
    def of(cls, cpu: str | int = 0, memory: str | int = 0, gpus: int = 0, **extra: int) -> Resources:
        """Convenience constructor: `Resources.of(cpu="500m", memory="1Gi", gpus=1)`; ints are canonical units."""
        items = {
            CPU: parse_quantity(CPU, cpu) if isinstance(cpu, str) else cpu,
            MEMORY: parse_quantity(MEMORY, memory) if isinstance(memory, str) else memory,
            GPU: gpus,
        }
        items.update(extra)
        return cls(items)

    @classmethod
    def parse(cls, quantities: Mapping[str, str | int | float]) -> Resources:
        """From a Kubernetes resource list: `Resources.parse({"cpu": "500m", "nvidia.com/gpu": "1"})`."""
        return cls({name: parse_quantity(name, value) for name, value in quantities.items()})

    def __getitem__(self, name: str) -> int:
        return self._items[name]

    def get_amount(self, name: str) -> int:
        return self._items.get(name, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._items.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Resources):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == {k: v for k, v in other.items() if v != 0}
        return NotImplemented

    def __repr__(self) -> str:
        return f"Resources({self._items!r})"

    def __add__(self, other: Mapping[str, int]) -> Resources:
        return Resources([*self._items.items(), *other.items()])

    def __sub__(self, other: Mapping[str, int]) -> Resources:
        return Resources([*self._items.items(), *((k, -v) for k, v in other.items())])

    def __mul__(self, factor: int) -> Resources:
        return Resources({k: v * factor for k, v in self._items.items()})

    __rmul__ = __mul__

    def fits_in(self, available: Mapping[str, int]) -> bool:
        """True when every amount here is at most the same resource in `available` (missing counts as 0)."""
        return all(amount <= available.get(name, 0) for name, amount in self._items.items())

    def times_in(self, available: Mapping[str, int], cap: int = 1 << 30) -> int:
        """How many copies of this request fit in `available` (at most `cap`; `cap` for an empty request)."""
        count = cap
        for name, amount in self._items.items():
            if amount > 0:
                count = min(count, max(0, available.get(name, 0)) // amount)
        return count
