"""Hypothesis strategies for bad input: arbitrary JSON-like values and mutations of valid objects.

The operator reads TrainingJobs, TuningSweeps and its own status back from the API server, and reports from pods.
None of these is trusted: the CRD schema may be older than the object, a second writer may edit status, and pods
run user code. These strategies produce what could arrive: dropped fields, wrong types, huge and negative numbers,
NaN and infinities, unicode (including NUL and lone surrogates), deep nesting, nulls, placeholders.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

JSON = dict[str, Any]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

INT64_MAX = 2**63 - 1

# leaves chosen to hit edges: bounds of int64 and of the models, floats that are not numbers, text that is a
# timestamp, a quantity, a placeholder or a control character
special_text = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\ud800",  # a lone surrogate: valid in Python text, not encodable as UTF-8
        "é" * 300,
        "${params.x}",
        "${params.",
        "2026-11-26T00:00:00Z",
        "2026-11-26t00:00:00z",
        "not a time",
        "500m",
        "-1",
        "1e999",
        "NaN",
        "Infinity",
        "elastic-trainer",
        "x" * 5000,
    ]
)
special_int = st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, INT64_MAX, INT64_MAX + 1, -(2**63) - 1, 10**30, -(10**30)])
special_float = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 1e308, -1e308, 5e-324, 0.5])
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    special_int,
    st.floats(),
    special_float,
    st.text(max_size=12),
    special_text,
)
keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["name", "spec", "status", "metadata", "template", "slot", "node", "type", "value", "metrics"]),
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON-like value (plus the non-JSON floats and strings Python allows)."""
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
        max_leaves=max_leaves,
    )


def deeply_nested(depth: int) -> Any:
    """[[[...]]] `depth` levels deep: what a hostile or buggy writer could store in an open-ended field."""
    out: Any = "bottom"
    for _ in range(depth):
        out = [out]
    return out


def load_examples(*names: str) -> list[JSON]:
    """The shipped example manifests (examples/*.yaml), the starting points of the mutations."""
    out: list[JSON] = []
    for name in names:
        out.extend(d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d)
    return out


def _containers(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every dict and list inside `obj` (the places a mutation can act on), `obj` itself first."""
    out = [path] if isinstance(obj, dict | list) else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_containers(v, (*path, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_containers(v, (*path, i)))
    return out


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


@st.composite
def mutations(draw: st.DrawFn, base: Any, max_mutations: int = 4) -> Any:
    """`base` with 1..max_mutations mutations anywhere: drop a field or item, replace a value by any JSON value,
    wrap it in a list, nest it deeply, or add an unknown field."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        places = _containers(obj)
        if not places:  # a scalar: replace it
            return draw(json_values())
        where = draw(st.sampled_from(places))
        container = _at(obj, where)
        op = draw(st.sampled_from(["drop", "replace", "replace", "wrap", "nest", "add"]))
        if isinstance(container, dict):
            if op == "add" or not container:
                container[draw(keys)] = draw(json_values())
                continue
            key: Any = draw(st.sampled_from(sorted(container, key=str)))
        else:
            if op == "add" or not container:
                container.append(draw(json_values()))
                continue
            key = draw(st.integers(0, len(container) - 1))
        if op == "drop":
            del container[key]
        elif op == "wrap":
            container[key] = [container[key]]
        elif op == "nest":
            container[key] = deeply_nested(draw(st.integers(20, 200)))
        else:
            container[key] = draw(json_values())
    return obj


def _string_leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, str):
        return [path]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    return [p for k, v in items for p in _string_leaves(v, (*path, k))]


@st.composite
def placeholder_anywhere(draw: st.DrawFn, base: Any, avoid: tuple[str, ...] = ()) -> Any:
    """`base` with a `${params.*}` placeholder in one of its strings (not under a key in `avoid`): the CRD's CEL
    rules look at command, args, env values and image only, so elsewhere (a path) only the operator's validation
    finds it. The text starts with `/`, as a path must."""
    obj = copy.deepcopy(base)
    path = draw(st.sampled_from([p for p in _string_leaves(obj) if not set(avoid) & set(map(str, p))]))
    _at(obj, path[:-1])[path[-1]] = draw(st.sampled_from(["/data/${params.lr}", "/${params.lr}"]))
    return obj


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def api_object(obj: Any, name: str = "job", namespace: str = "ns", uid: str = "uid-1") -> JSON:
    """What the API server guarantees of any object it sends: a JSON object whose metadata is well typed (name,
    namespace, uid, generation; labels and annotations map text to text). Everything else is up to the writer, so
    a mutated metadata keeps only labels and annotations that are maps of text (their keys and values stay free)."""
    out: JSON = dict(obj) if isinstance(obj, dict) else {"spec": obj}
    raw = out.get("metadata")
    meta: JSON = (
        {k: v for k, v in raw.items() if k in ("labels", "annotations") and _string_map(v)}
        if isinstance(raw, dict)
        else {}
    )
    meta.update(name=name, namespace=namespace, uid=uid, generation=1, creationTimestamp="2026-11-26T00:00:00Z")
    out["metadata"] = meta
    return out
