"""Client JSON bodies: decoded once, and only within limits the gateway can always write
back out.

A body is refused with a 400 naming the field, never a 500 later, when it holds what no
upstream takes and the encoder cannot write: an integer outside 64 bits, nesting deeper
than ``MAX_DEPTH`` levels (NaN, Infinity and numbers that overflow a double are already
malformed JSON to the decoder). orjson writes at most ``ENCODER_DEPTH`` levels; the
difference is headroom for what translation wraps around the client's values (a tool's
schema goes one level deeper toward OpenAI, a tool call's arguments string becomes an
object toward Anthropic), so a body that passes can be re-encoded in any format.

The check is the encoder itself, in C: the body is written once under the headroom's worth
of empty levels; only a body that fails is walked (in Python) to name the field.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from izzi_proxy.errors import InvalidRequest

MAX_DEPTH = 128  # levels of objects and arrays a client's body may nest
ENCODER_DEPTH = 254  # what orjson writes
_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson writes (and a 64-bit upstream reads)

# The headroom, built once: [[…[None]…]] with the innermost list kept, so each check is one
# dumps call (the event loop runs one check at a time: no await in between).
_OUTER: list[Any] = [None]
_INNER = _OUTER
for _ in range(ENCODER_DEPTH - MAX_DEPTH - 1):
    _INNER[0] = [None]
    _INNER = _INNER[0]


def decode_object(raw: bytes) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest(f"Request body nests deeper than {MAX_DEPTH} levels of objects and arrays") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    check_encodable(body)
    return body


def check_encodable(value: Any, where: str = "") -> None:
    """400 unless ``value`` (found at ``where`` in the request) stays within the limits."""
    _INNER[0] = value
    try:
        orjson.dumps(_OUTER)
    except orjson.JSONEncodeError:
        raise _refusal(value, where) from None
    finally:
        _INNER[0] = None


_NAMED_LEVELS = 3  # how far down a refusal names the field (tools[0].input_schema)


def _refusal(value: Any, where: str) -> InvalidRequest:
    """The first field of ``value`` that is out of limits, named down to ``_NAMED_LEVELS``."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                return InvalidRequest(f"`{path or 'body'}` nests deeper than {MAX_DEPTH} levels of objects and arrays",
                                      param=path or None)  # fmt: skip
            items = node.items() if isinstance(node, dict) else enumerate(node)
            named = depth < _NAMED_LEVELS
            stack.extend(reversed([(v, _child(path, k) if named else path, depth + 1) for k, v in items]))
        elif isinstance(node, int) and not isinstance(node, bool) and not _INT_RANGE[0] <= node <= _INT_RANGE[1]:
            return InvalidRequest(f"`{path}`: the integer {node} is out of range (64 bits at most)", param=path or None)
    return InvalidRequest(f"`{where or 'body'}` cannot be written back out as JSON", param=where or None)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key
