"""One error-shape assertion per dialect, used by every test that expects an error."""

from __future__ import annotations

from typing import Any

import aiohttp


async def assert_openai_error(resp: aiohttp.ClientResponse, status: int, type_: str) -> dict[str, Any]:
    """The response is OpenAI's error envelope with our status table; returns the error object."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["type"] == type_, error
    assert isinstance(error["message"], str) and error["message"], error
    assert {"param", "code"} <= set(error)
    assert "Traceback" not in error["message"]
    assert resp.headers.get("x-request-id", "").startswith("req_")
    return error


async def assert_anthropic_error(resp: aiohttp.ClientResponse, status: int, type_: str) -> dict[str, Any]:
    """Anthropic's error envelope with our status table; returns the error object."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["type"] == "error" and set(body) == {"type", "error"}, body
    error = body["error"]
    assert error["type"] == type_, error
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
    assert resp.headers.get("x-request-id", "").startswith("req_")
    return error
