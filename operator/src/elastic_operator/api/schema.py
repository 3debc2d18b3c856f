"""Pydantic JSON Schema -> Kubernetes structural OpenAPI v3 schema (what a CRD's openAPIV3Schema accepts).

Structural means: every node states its type (or is int-or-string), no $ref, no additionalProperties: false, and
anyOf/oneOf/allOf/not only for value validation. The conversion inlines definitions, drops null branches of
optional fields (an unset field is simply absent), turns JSON Schema 2020's numeric exclusive bounds into OpenAPI
3.0's boolean ones and `const` into a one-value enum. Field docstrings become descriptions.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

JSON = dict[str, Any]

# The JSONSchemaProps keys a CRD accepts; a few of them are forbidden in structural schemas (see FORBIDDEN).
ALLOWED_KEYS = frozenset(
    {
        "description",
        "type",
        "format",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "properties",
        "additionalProperties",
        "nullable",
        "example",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
FORBIDDEN = frozenset({"$ref", "definitions", "$defs", "id", "$schema", "additionalItems", "dependencies", "const"})


class SchemaError(ValueError):
    pass


def openapi_schema(model: type[BaseModel]) -> JSON:
    """The structural OpenAPI v3 schema of a model (wire names, descriptions, defaults, bounds, CEL rules)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, ())


def _resolve(ref: str, defs: JSON) -> JSON:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise SchemaError(f"unexpected $ref {ref}")
    return copy.deepcopy(defs[ref[len(prefix) :]])


def _convert(node: JSON, defs: JSON, path: tuple[str, ...]) -> JSON:
    node = dict(node)
    node.pop("title", None)
    if isinstance(node.get("description"), str):
        node["description"] = " ".join(node["description"].split())
    if "$ref" in node:
        target = _resolve(node.pop("$ref"), defs)
        # the field's own keywords (its description, default) win over the definition's
        node = {**target, **node}
        node.pop("title", None)
    if "allOf" in node and len(node["allOf"]) == 1:
        only = node.pop("allOf")[0]
        node = {**_convert(only, defs, path), **node}
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        nullable = len(branches) != len(node["anyOf"])
        if nullable and node.get("default", 0) is None:
            node.pop("default")
        if len(branches) == 1:
            node.pop("anyOf")
            node = {**_convert(branches[0], defs, path), **node}
        elif node.get("x-kubernetes-int-or-string"):
            node.pop("anyOf")
        else:
            raise SchemaError(f"{'.'.join(path) or '<root>'}: a union of several types is not structural: {node}")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for key, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if key in node and not isinstance(node[key], bool):
            node[flag] = node[key]
            node[key] = True
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in node and "type" not in node:
        kinds = {type(v) for v in node["enum"]}
        if kinds == {str}:
            node["type"] = "string"
    if "properties" in node:
        node["properties"] = {k: _convert(v, defs, (*path, k)) for k, v in node["properties"].items()}
        node.setdefault("type", "object")
    if "patternProperties" in node:
        ((key_pattern, value_schema),) = node.pop("patternProperties").items()
        node["additionalProperties"] = value_schema
        node.setdefault("x-kubernetes-validations", []).append(
            {"rule": f"self.all(k, k.matches('{key_pattern}'))", "message": f"keys must match {key_pattern}"}
        )
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _convert(node["additionalProperties"], defs, (*path, "*"))
        node.setdefault("type", "object")
    if "items" in node:
        node["items"] = _convert(node["items"], defs, (*path, "[]"))
    if "propertyNames" in node:
        names = node.pop("propertyNames")
        if "maxLength" in names:  # a key bound: keeps CEL's cost estimate of map keys finite
            node.setdefault("x-kubernetes-validations", []).append(
                {
                    "rule": f"self.all(k, k.size() <= {names['maxLength']})",
                    "message": f"keys must be at most {names['maxLength']} characters",
                }
            )
        if "pattern" in names:
            node.setdefault("x-kubernetes-validations", []).append(
                {
                    "rule": f"self.all(k, k.matches('{names['pattern']}'))",
                    "message": f"keys must match {names['pattern']}",
                }
            )
    unknown = set(node) - ALLOWED_KEYS
    if unknown:
        raise SchemaError(f"{'.'.join(path) or '<root>'}: keywords a CRD cannot express: {sorted(unknown)}")
    return _ordered(node)


_ORDER = ("description", "type", "format")


def _ordered(node: JSON) -> JSON:
    first = {k: node[k] for k in _ORDER if k in node}
    rest = {k: node[k] for k in sorted(node) if k not in first and k not in ("properties", "required")}
    tail: JSON = {k: node[k] for k in ("required", "properties") if k in node}
    return {**first, **rest, **tail}


def structural_problems(schema: JSON, path: str = "", field: bool = True) -> list[str]:
    """Why a schema is not structural (empty when it is): the checks the API server makes, and one of our own:
    every field (property) has a description, so `kubectl explain` documents it."""
    problems: list[str] = []
    where = path or "<root>"
    for key in schema:
        if key in FORBIDDEN or key not in ALLOWED_KEYS:
            problems.append(f"{where}: forbidden keyword {key}")
    typed = (
        "type" in schema
        or schema.get("x-kubernetes-int-or-string")
        or (schema.get("x-kubernetes-preserve-unknown-fields") and "type" in schema)
    )
    if not typed:
        problems.append(f"{where}: no type")
    if field and not schema.get("description") and path != ".metadata":  # the server documents ObjectMeta
        problems.append(f"{where}: no description")
    if schema.get("additionalProperties") is False:
        problems.append(f"{where}: additionalProperties: false")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties together")
    for junction in ("anyOf", "oneOf", "allOf", "not"):
        branches = schema.get(junction)
        if branches is None:
            continue
        for branch in branches if isinstance(branches, list) else [branches]:
            bad = {
                "type",
                "description",
                "default",
                "properties",
                "additionalProperties",
                "items",
                "nullable",
            }
            if set(branch) & bad and not schema.get("x-kubernetes-int-or-string"):
                problems.append(f"{where}: {junction} may only hold value validations")
    if schema.get("type") == "array" and "items" not in schema:
        problems.append(f"{where}: array without items")
    bare = "properties" not in schema and "additionalProperties" not in schema
    if schema.get("type") == "object" and bare and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{where}: object with neither properties nor additionalProperties")
    for name, sub in (schema.get("properties") or {}).items():
        problems.extend(structural_problems(sub, f"{path}.{name}"))
    if isinstance(schema.get("additionalProperties"), dict):
        problems.extend(structural_problems(schema["additionalProperties"], f"{path}.*", field=False))
    if isinstance(schema.get("items"), dict):
        problems.extend(structural_problems(schema["items"], f"{path}[]", field=False))
    return problems
