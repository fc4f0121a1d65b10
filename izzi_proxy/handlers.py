"""Request handlers: thin glue from a parsed request to the router and the relay.

Each handler is tagged with the dialect its route speaks (for error rendering) and
whether it needs a key and is metered; middleware reads those tags from the matched route.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from izzi_proxy import relay
from izzi_proxy.dialects import Dialect
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.errors import InvalidRequest, NotFound, RequestTooLarge
from izzi_proxy.keys import CONFIG, RECORD, REQUEST_ID, ROUTER

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def endpoint(dialect: Dialect, *, public: bool = False, metered: bool = False):
    def tag(handler: Handler) -> Handler:
        handler.dialect = dialect  # type: ignore[attr-defined]
        handler.public = public  # type: ignore[attr-defined]
        handler.metered = metered  # type: ignore[attr-defined]
        return handler

    return tag


async def read_body(request: web.Request) -> bytes:
    limit = request.app[CONFIG].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge(
            f"Request body is {request.content_length} bytes, over the limit of {limit} bytes"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge(f"Request body is over the limit of {limit} bytes") from None
    if not raw:
        raise InvalidRequest("Request body is empty; send a JSON object")
    return raw


def generation(dialect: Dialect) -> Handler:
    """The handler for a dialect's generation route (chat completions, messages, responses)."""

    @endpoint(dialect, metered=True)
    async def handle(request: web.Request) -> web.StreamResponse:
        parsed = dialect.parse(await read_body(request))
        record = request[RECORD]
        entry = request.app[CONFIG].catalog.resolve(parsed.model)
        if entry is None:
            raise NotFound(
                f"The model {parsed.model!r} does not exist; GET /v1/models lists the models",
                param="model",
                code="model_not_found",
            )
        record.model, record.stream = entry.id, parsed.stream
        sent = await request.app[ROUTER].send(entry, dialect, parsed, request[REQUEST_ID], {})
        record.upstream, record.upstream_model = sent.route.upstream, sent.route.model
        if parsed.stream:
            return await relay.relay_stream(request, sent.reply, dialect.stream_tap(parsed), dialect, record)
        return await relay.relay_body(sent.reply, dialect, record)

    return handle


_STARTED = int(time.time())


@endpoint(OPENAI_CHAT)
async def list_models(request: web.Request) -> web.Response:
    data = [entry.to_openai(_STARTED) for entry in request.app[CONFIG].catalog]
    return _json({"object": "list", "data": data})


@endpoint(OPENAI_CHAT)
async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    entry = request.app[CONFIG].catalog.resolve(name)
    if entry is None:
        raise NotFound(f"The model {name!r} does not exist", param="model", code="model_not_found")
    return _json(entry.to_openai(_STARTED))


@endpoint(OPENAI_CHAT, public=True)
async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")
