"""Request handlers: thin glue from a parsed request to the router and the relay.

Each handler is tagged with its route's metadata (``routes.endpoint``): the dialect it
speaks, whether it is public and whether it is metered; middleware reads it from the
matched route.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web

from izzi_proxy import relay, tokens
from izzi_proxy.access import check_model
from izzi_proxy.canonical import Usage
from izzi_proxy.catalog import ModelEntry
from izzi_proxy.dialects import Dialect, ParsedRequest, StreamTap
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES
from izzi_proxy.dialects.echo import echo_in_body
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.errors import NotFound, UpstreamError
from izzi_proxy.keys import API_KEY, BILL, BILLING, BODY, CONFIG, RECORD, REQUEST_ID, ROUTER
from izzi_proxy.routes import Handler, endpoint
from izzi_proxy.translate import TranslatingTap

TOKEN_COUNT_HEADER = "x-izzi-token-count"


def read_body(request: web.Request) -> bytes:
    """The request's body, read (bounded in size and time) by the body middleware."""
    return request[BODY]


def resolve(request: web.Request, model: str) -> ModelEntry:
    entry = request.app[CONFIG].catalog.resolve(model)
    if entry is None:
        raise NotFound(
            f"The model {model!r} does not exist; GET /v1/models lists the models",
            param="model",
            code="model_not_found",
        )
    return entry


@dataclass(slots=True)
class Generated:
    response: web.StreamResponse
    tap: StreamTap | None = None  # a stream's tap, which saw the whole answer go by
    body: bytes | None = None  # a plain answer as sent


async def generate(request: web.Request, dialect: Dialect, parsed: ParsedRequest) -> Generated:
    """Route a parsed request, relay the answer (passthrough or translated), meter it."""
    record = request[RECORD]
    entry = resolve(request, parsed.model)
    check_model(request.app[CONFIG].limits, request[API_KEY], entry)
    record.model, record.requested_model, record.stream = entry.id, parsed.model, parsed.stream
    billing = request.app[BILLING]
    bill = request[BILL] = billing.bill(request[API_KEY], entry, parsed)
    await billing.hold(bill, entry, parsed, record)  # durable before the upstream is asked
    headers = dialect.forward_headers(request.headers)
    try:
        sent = await request.app[ROUTER].send(entry, dialect, parsed, request[REQUEST_ID], headers)
    except UpstreamError as err:
        record.attempts = err.attempts
        raise
    bill.answered = True
    record.upstream, record.upstream_model, record.attempts = sent.route.upstream, sent.route.model, sent.attempts
    passthrough = sent.passthrough(dialect)
    if parsed.stream:
        tap = (
            dialect.stream_tap(parsed)
            if passthrough
            else TranslatingTap(sent.wire.stream_parser(sent.route.upstream), dialect.stream_renderer(parsed))
        )
        meter = relay.Meter(billing, bill, dialect.name)
        return Generated(await relay.relay_stream(request, sent.reply, tap, dialect, record, meter), tap=tap)

    def answer(body: bytes) -> tuple[bytes, Usage | None]:
        if passthrough:
            return echo_in_body(body, parsed.model), dialect.usage_of_body(body)
        resp = sent.wire.parse_response(body, sent.route.upstream)
        return dialect.render_response(resp, parsed), resp.usage

    response = await relay.relay_body(sent.reply, record, answer, bill)
    return Generated(response, body=response.body)  # type: ignore[arg-type]


def generation(dialect: Dialect) -> Handler:
    """The handler for a dialect's generation route (chat completions, messages)."""

    @endpoint(dialect, metered=True)
    async def handle(request: web.Request) -> web.StreamResponse:
        parsed = dialect.parse(read_body(request))
        return (await generate(request, dialect, parsed)).response

    return handle


@endpoint(ANTHROPIC_MESSAGES, metered=True, limit="count_tokens")
async def count_tokens(request: web.Request) -> web.Response:
    """``POST /v1/messages/count_tokens``: the upstream's exact count where it has one
    (Claude models), else a local estimate; ``x-izzi-token-count`` says which. Limited by
    the plan's ``count_tokens_rpm``, and recorded (with no usage: a count costs nothing)."""
    parsed = ANTHROPIC_MESSAGES.parse_count_tokens(read_body(request))
    entry = resolve(request, parsed.model)
    check_model(request.app[CONFIG].limits, request[API_KEY], entry)
    record = request[RECORD]
    record.model, record.requested_model = entry.id, parsed.model
    headers = ANTHROPIC_MESSAGES.forward_headers(request.headers)
    counters = request.app[ROUTER].token_counters(entry)
    for i, (route, counter) in enumerate(counters):
        try:
            counted = await counter.count_tokens({**parsed.body, "model": route.model}, headers)
        except UpstreamError as err:
            if err.retryable and i < len(counters) - 1:
                continue
            raise
        record.upstream, record.upstream_model = route.upstream, route.model
        return json_response({"input_tokens": counted}, headers={TOKEN_COUNT_HEADER: "exact"})
    estimated = tokens.estimate_messages_body(parsed.body)
    return json_response({"input_tokens": estimated}, headers={TOKEN_COUNT_HEADER: "estimated"})


@endpoint(OPENAI_CHAT, public=True)
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def json_response(data: object, headers: dict[str, str] | None = None, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)
