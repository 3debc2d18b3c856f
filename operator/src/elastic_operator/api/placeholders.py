"""`${params.NAME}` placeholders in a sweep's trial template: find them, check them, render them. Pure functions.

Placeholders are substituted inside string values only (command, args, env values, image, paths, label values, ...),
anywhere in the string: `--lr=${params.lr}` becomes `--lr=0.001`. Typed fields (integers, booleans) cannot hold a
placeholder; the schema keeps them typed so a trial template is validated when the sweep is created.

Errors name the field by its path in the object, e.g. `spec.trialTemplate.spec.template.args[3]`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
PLACEHOLDER = re.compile(r"\$\{params\.([A-Za-z_][A-Za-z0-9_]{0,62})\}")
OPENER = "${params."

ParamValue = str | int | float | bool
PathPart = str | int
T = TypeVar("T")


class PlaceholderError(ValueError):
    """Rendering failed; `issues` lists every (field path, message), the first one is also the message."""

    def __init__(self, issues: Sequence[tuple[str, str]]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in self.issues))


def field_path(parts: Sequence[PathPart], prefix: str = "") -> str:
    """("spec", "template", "args", 2) -> "spec.template.args[2]" (appended to `prefix`)."""
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


def format_value(value: ParamValue) -> str:
    """The text a parameter value is substituted as: integers and strings as they are, booleans as true/false,
    floats in their shortest exact form (`0.001`, `1e-05`), so float(text) gives the value back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"parameter value {value!r} is not finite")
        return repr(value)
    return value


def _walk(obj: Any, parts: tuple[PathPart, ...]) -> Iterator[tuple[tuple[PathPart, ...], str, bool]]:
    """Yield (path, text, is_key) for every string in a JSON-like tree."""
    if isinstance(obj, str):
        yield parts, obj, False
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            if isinstance(key, str):
                yield (*parts, key), key, True
            yield from _walk(value, (*parts, key))
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _walk(value, (*parts, i))


def _text_issues(text: str, declared: Collection[str] | None) -> list[str]:
    issues: list[str] = []
    well_formed = PLACEHOLDER.findall(text)
    if text.count(OPENER) != len(well_formed):
        issues.append(
            "malformed placeholder: write ${params.NAME}, where NAME starts with a letter or _ and has only "
            "letters, digits and _"
        )
    if declared is not None:
        for name in dict.fromkeys(well_formed):
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                issues.append(f"placeholder ${{params.{name}}} names no declared parameter (declared: {known})")
    return issues


def find_placeholders(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(field path, parameter name) of every well-formed placeholder in the tree's string values."""
    found: list[tuple[str, str]] = []
    for parts, text, is_key in _walk(obj, ()):
        if not is_key:
            found.extend((field_path(parts, prefix), name) for name in PLACEHOLDER.findall(text))
    return found


def placeholder_errors(obj: Any, declared: Collection[str] | None, prefix: str = "") -> list[tuple[str, str]]:
    """(field path, message) for every malformed placeholder, every placeholder in a map key, and (when `declared`
    is given) every placeholder naming a parameter not in `declared`."""
    errors: list[tuple[str, str]] = []
    for parts, text, is_key in _walk(obj, ()):
        if OPENER not in text:
            continue
        path = field_path(parts, prefix)
        if is_key:
            errors.append((path, "placeholders are substituted in values only, not in keys"))
            continue
        errors.extend((path, msg) for msg in _text_issues(text, declared))
    return errors


def leftover_placeholder_errors(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(field path, message) for every `${params.` left in an object that should be fully rendered (a TrainingJob
    that no sweep created, or a rendered trial)."""
    return [
        (
            field_path(parts, prefix),
            "contains a ${params.*} placeholder; only a TuningSweep's trialTemplate may",
        )
        for parts, text, _ in _walk(obj, ())
        if OPENER in text
    ]


def render(template: T, params: Mapping[str, ParamValue], prefix: str = "") -> T:
    """A deep copy of `template` (a JSON-like tree) with every `${params.NAME}` in its string values replaced by
    `format_value(params[NAME])`. Raises PlaceholderError naming every offending field when a placeholder is
    malformed, sits in a map key or names a parameter missing from `params`. Parameters not used are fine."""
    issues = placeholder_errors(template, params.keys(), prefix)
    if issues:
        raise PlaceholderError(issues)
    texts = {name: format_value(value) for name, value in params.items()}

    def sub(obj: Any) -> Any:
        if isinstance(obj, str):
            return PLACEHOLDER.sub(lambda m: texts[m.group(1)], obj) if OPENER in obj else obj
        if isinstance(obj, Mapping):
            return {k: sub(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [sub(v) for v in obj]
        return obj

    rendered: T = sub(template)
    return rendered
