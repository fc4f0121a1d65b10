"""Auth middleware alone: a tiny app, a real ledger, aiohttp's test client."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from izzi_proxy.config import DEFAULT_CONFIG, load_config
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.keys import API_KEY, LEDGER
from izzi_proxy.ledger import open_ledger
from izzi_proxy.middleware.auth import make_auth
from izzi_proxy.middleware.errors import make_errors
from izzi_proxy.routes import endpoint


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path):
    config = load_config(DEFAULT_CONFIG, env={})

    @endpoint(OPENAI_CHAT)
    async def private(request: web.Request) -> web.Response:
        return web.json_response({"account": request[API_KEY].account_name})

    @endpoint(OPENAI_CHAT, public=True)
    async def public(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def untagged(request: web.Request) -> web.Response:  # registered without @endpoint
        return web.json_response({"secret": "operator data"})

    app = web.Application(middlewares=[make_errors(config), make_auth(config)])
    app[LEDGER] = await open_ledger(f"sqlite:///{tmp_path}/a.sqlite3")
    app.router.add_get("/private", private)
    app.router.add_get("/public", public)
    app.router.add_get("/untagged", untagged)
    account = await app[LEDGER].create_account("acme")
    _, secret = await app[LEDGER].create_key(account.id, "k")
    client = await aiohttp_client(app)
    client.secret = secret
    yield client
    await app[LEDGER].aclose()


@pytest.mark.parametrize(
    "headers",
    [
        lambda s: {"Authorization": f"Bearer {s}"},
        lambda s: {"Authorization": f"bearer   {s} "},
        lambda s: {"x-api-key": s},
    ],
)
async def test_accepted(client, headers) -> None:
    resp = await client.get("/private", headers=headers(client.secret))
    assert resp.status == 200 and (await resp.json()) == {"account": "acme"}


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "Missing API key"),
        ({"Authorization": "Bearer "}, "Missing API key"),
        ({"Authorization": "Token abc"}, "Missing API key"),
        (
            {"Authorization": "Bearer izzi-wrongwrongwrongwrongwrongwrongwrong1234"},
            "Invalid API key: izzi-wrongw…1234",
        ),
        ({"x-api-key": "sk-ant-api03-something"}, "Invalid API key"),
    ],
)
async def test_refused(client, headers, words) -> None:
    resp = await client.get("/private", headers=headers)
    assert resp.status == 401
    error = (await resp.json())["error"]
    assert error["type"] == "authentication_error" and words in error["message"]


async def test_public_routes_need_no_key(client) -> None:
    assert (await client.get("/public")).status == 200


async def test_unknown_routes_answer_404_before_auth(client) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"]["type"] == "not_found"


async def test_a_route_without_metadata_fails_closed(client) -> None:
    resp = await client.get("/untagged")
    assert resp.status == 401 and (await resp.json())["error"]["type"] == "authentication_error"
    resp = await client.get("/untagged", headers={"x-api-key": client.secret})
    assert resp.status == 200


async def test_a_wrong_method_answers_405_before_auth(client) -> None:
    resp = await client.post("/private")
    assert resp.status == 405 and (await resp.json())["error"]["type"] == "invalid_request_error"
