"""The Responses API's own routes: create (with ``store`` and ``previous_response_id``),
retrieve and delete; and the WebSocket handshake some Codex configurations try first.

Answers are kept per account, in the gateway's own database, for
``[storage] responses_retention_days``, unless the request says ``store: false`` (OpenAI's
default is to store). ``previous_response_id`` is resolved here for every model: the
stored conversation (its input and output items) goes before the new input, so a chain
can even move between vendors. Another account's response is a 404, as is an expired one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from izzi_proxy.dialects.openai_responses import OPENAI_RESPONSES
from izzi_proxy.dialects.openai_responses.request import Responses, input_items
from izzi_proxy.errors import MethodNotAllowed, NotFound, WebSocketRefused
from izzi_proxy.handlers import Generated, generate, json_response, read_body
from izzi_proxy.keys import API_KEY, CONFIG, LEDGER
from izzi_proxy.ledger import StoredResponse
from izzi_proxy.routes import endpoint

log = logging.getLogger("izzi.responses")

PURGE_EVERY_S = 3600.0


@endpoint(OPENAI_RESPONSES, metered=True)
async def create(request: web.Request) -> web.StreamResponse:
    parsed = OPENAI_RESPONSES.parse(read_body(request))
    account_id = request[API_KEY].account_id
    previous = parsed.typed.req.previous_response_id
    if previous:
        stored = await request.app[LEDGER].get_response(account_id, previous)
        if stored is None:
            raise NotFound(f"Previous response with id {previous!r} not found", param="previous_response_id")
        parsed = OPENAI_RESPONSES.with_history(parsed, [*stored.input, *stored.response.get("output", [])])
    generated = await generate(request, OPENAI_RESPONSES, parsed)
    view: Responses = parsed.typed
    if view.req.store is not False and (final := _final(generated)) is not None:
        await _store(request, account_id, final, input_items(parsed.body))  # history included
    return generated.response


def _final(generated: Generated) -> dict[str, Any] | None:
    final = generated.exchange.final()
    if not final or final.get("status") not in ("completed", "incomplete") or not final.get("id"):
        return None
    return final


async def _store(request: web.Request, account_id: int, final: dict[str, Any], conversation: list[dict]) -> None:
    days = request.app[CONFIG].storage.responses_retention_days
    now = time.time()
    stored = StoredResponse(
        id=final["id"],
        account_id=account_id,
        model=str(final.get("model", "")),
        created_at=now,
        expires_at=now + days * 86400 if days else None,
        input=conversation,
        response=final,
    )
    try:
        await asyncio.shield(request.app[LEDGER].store_response(stored))
    except Exception:
        log.exception("response %s could not be stored", final["id"])


@endpoint(OPENAI_RESPONSES)
async def websocket(request: web.Request) -> web.Response:
    """``GET /v1/responses``: Codex's Responses-over-WebSocket handshake, answered so that it
    falls back to ``POST /v1/responses`` at once."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise MethodNotAllowed(f"Method GET is not allowed on {request.path}; use POST")
    raise WebSocketRefused(
        "This gateway serves the Responses API over HTTP, not WebSocket: POST /v1/responses "
        "(for Codex: supports_websockets = false in the model provider)"
    )


@endpoint(OPENAI_RESPONSES)
async def retrieve(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    stored = await request.app[LEDGER].get_response(request[API_KEY].account_id, response_id)
    if stored is None:
        raise NotFound(f"No response with id {response_id!r}", param="response_id")
    return json_response(stored.response)


@endpoint(OPENAI_RESPONSES)
async def delete(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not await request.app[LEDGER].delete_response(request[API_KEY].account_id, response_id):
        raise NotFound(f"No response with id {response_id!r}", param="response_id")
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def purge_expired(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: delete expired responses at start and every hour."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):
                if purged := await app[LEDGER].purge_responses(time.time()):
                    log.info("purged %d expired responses", purged)
            await asyncio.sleep(PURGE_EVERY_S)

    task = asyncio.create_task(loop(), name="izzi-purge-responses")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
