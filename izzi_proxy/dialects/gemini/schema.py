"""Function parameter schemas between JSON Schema and Gemini's ``Schema`` (an OpenAPI 3.0
subset with upper-case type names).

Gemini clients send either ``parameters`` in Google's dialect (``"type": "OBJECT"``,
``nullable``) or ``parametersJsonSchema`` (plain JSON Schema, as the Gemini CLI sends);
OpenAI and Anthropic upstreams take JSON Schema. Toward a Gemini upstream, ``parameters``
may hold only the keywords its ``Schema`` message has: ``$schema``, ``additionalProperties``,
``$ref`` and the like are refused with a 400, so they are dropped (local ``$ref`` inlined,
``oneOf`` read as ``anyOf``, ``const`` as a one-value ``enum``).
"""

from __future__ import annotations

from typing import Any

# The keywords of Gemini's Schema message (google.ai.generativelanguage.v1beta.Schema).
_KEPT = frozenset(
    {
        "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "minProperties",
        "maxProperties", "minLength", "maxLength", "pattern", "example", "propertyOrdering", "default",
        "minimum", "maximum",
    }
)  # fmt: skip
_STRING_FORMATS = frozenset({"enum", "date-time"})
_NUMBER_FORMATS = {"integer": frozenset({"int32", "int64"}), "number": frozenset({"float", "double"})}
_MAX_DEPTH = 32


def to_json_schema(schema: Any) -> Any:
    """Google's ``Schema`` as JSON Schema: lower-case types, ``nullable`` as a null type."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "nullable":
            continue
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: to_json_schema(s) for name, s in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = to_json_schema(value)
        elif key == "propertyOrdering":
            continue
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def to_gemini(schema: Any) -> dict[str, Any] | None:
    """JSON Schema as Gemini's ``parameters``, or None where it describes no arguments
    (Gemini refuses an ``OBJECT`` without properties)."""
    if not isinstance(schema, dict):
        return None
    converted = _convert(schema, schema, 0)
    if converted.get("type") == "OBJECT" and not converted.get("properties"):
        return None
    return converted


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for name in ref[2:].split("/"):
        node = node.get(name.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _convert(schema: dict[str, Any], root: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        return {"type": "OBJECT"}
    if isinstance(ref := schema.get("$ref"), str):
        schema = {**_resolve(ref, root), **{k: v for k, v in schema.items() if k != "$ref"}}
    if isinstance(all_of := schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in all_of:
            if isinstance(part, dict):
                part = _resolve(part["$ref"], root) if isinstance(part.get("$ref"), str) else part
                merged.setdefault("properties", {}).update(part.get("properties") or {})
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        schema = merged
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [t for t in kind if isinstance(t, str) and t != "null"]
        if "null" in kind:
            out["nullable"] = True
        kind = named[0] if named else None
    if isinstance(kind, str):
        out["type"] = kind.upper()
    elif "properties" in schema:
        out["type"] = "OBJECT"
    for key, value in schema.items():
        if key in _KEPT:
            out[key] = value
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if "enum" in out:
        if all(isinstance(v, str) for v in out["enum"]) and out.get("type", "STRING") == "STRING":
            out["type"] = "STRING"
        else:
            del out["enum"]  # Gemini takes enums of strings only
    if "format" in out:
        lowered = str(out.get("type", "")).lower()
        allowed = _STRING_FORMATS if lowered == "string" else _NUMBER_FORMATS.get(lowered, frozenset())
        if out["format"] not in allowed:
            del out["format"]
    if isinstance(properties := schema.get("properties"), dict):
        out["properties"] = {
            name: _convert(sub, root, depth + 1) for name, sub in properties.items() if isinstance(sub, dict)
        }
        required = schema.get("required")
        if isinstance(required, list):
            kept = [name for name in required if name in out["properties"]]
            if kept:
                out["required"] = kept
    if isinstance(items := schema.get("items"), dict):
        out["items"] = _convert(items, root, depth + 1)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(alternatives, list):
        subs = [s for s in alternatives if isinstance(s, dict)]
        nulls = [s for s in subs if s.get("type") == "null"]
        rest = [_convert(s, root, depth + 1) for s in subs if s.get("type") != "null"]
        if nulls:
            out["nullable"] = True
        if len(rest) == 1 and "type" not in out:
            out.update(rest[0])
        elif rest:
            out["anyOf"] = rest
    return out
