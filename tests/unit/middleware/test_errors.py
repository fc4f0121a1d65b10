"""The errors middleware alone: every failure leaves in the dialect's shape, no traceback."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from izzi_proxy.config import DEFAULT_CONFIG, load_config
from izzi_proxy.errors import GatewayError, NotFound, UpstreamConnectionError, upstream_error
from izzi_proxy.middleware.errors import make_errors
from izzi_proxy.middleware.request_log import add_request_id, make_request_log


def app_raising(exc: BaseException | None) -> web.Application:
    config = load_config(DEFAULT_CONFIG, env={})

    async def handler(request: web.Request) -> web.StreamResponse:
        if exc is not None:
            raise exc
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: x\n\n")
        return response

    app = web.Application(middlewares=[make_request_log(config), make_errors(config)])
    app.on_response_prepare.append(add_request_id)
    app.router.add_get("/x", handler)
    return app


@pytest.mark.parametrize(
    ("exc", "status", "type_"),
    [
        (NotFound("no such thing"), 404, "not_found"),
        (upstream_error("up", 503, "busy"), 502, "upstream_error"),
        (upstream_error("up", 422, "bad field"), 400, "invalid_request_error"),
        (UpstreamConnectionError("gone", upstream="up"), 502, "connection_error"),
        (GatewayError("generic"), 500, "server_error"),
        (ValueError("internal detail"), 500, "server_error"),
        (web.HTTPBadRequest(text="bad"), 400, "invalid_request_error"),
        (web.HTTPServiceUnavailable(), 500, "server_error"),
    ],
)
async def test_rendered(aiohttp_client, exc, status, type_) -> None:
    client = await aiohttp_client(app_raising(exc))
    resp = await client.get("/x")
    assert resp.status == status
    body = await resp.json()
    assert body["error"]["type"] == type_
    assert "Traceback" not in body["error"]["message"] and "internal detail" not in body["error"]["message"]
    assert resp.headers["x-request-id"].startswith("req_")


async def test_request_id_on_streams(aiohttp_client) -> None:
    client = await aiohttp_client(app_raising(None))
    resp = await client.get("/x")
    assert resp.status == 200 and resp.headers["x-request-id"].startswith("req_")


async def test_redirects_pass_through(aiohttp_client) -> None:
    client = await aiohttp_client(app_raising(web.HTTPFound("/elsewhere")))
    resp = await client.get("/x", allow_redirects=False)
    assert resp.status == 302


async def test_cancellation_is_not_swallowed(aiohttp_client) -> None:
    client = await aiohttp_client(app_raising(asyncio.CancelledError()))
    with pytest.raises(aiohttp.ServerDisconnectedError):  # the connection drops; no error body
        await client.get("/x")
