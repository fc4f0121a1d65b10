"""A request's JSON-object body and its fields, for the operator's and the payment routes:
a 400 in OpenAI's shape naming what was wrong (the body middleware has read the bytes)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from izzi_proxy.errors import InvalidRequest
from izzi_proxy.keys import BODY


def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(request.get(BODY) or b"{}")
    except orjson.JSONDecodeError as err:
        raise InvalidRequest(f"The body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"Missing required field {name!r}", param=name)
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidRequest(f"{name!r} has the wrong type", param=name)
    return value


def amount(body: dict[str, Any]) -> str | int:
    """An amount of credits: a decimal string or a whole number (``pricing.to_micro`` reads it)."""
    value = body.get("amount")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidRequest("'amount' is required: credits as a decimal string (\"10.5\") or a whole number",
                             param="amount")  # fmt: skip
    return value
