"""Request handlers: thin glue from a parsed request to the router and the relay.

Each handler is tagged with its route's metadata (``routes.endpoint``): the dialect it
speaks, whether it is public and whether it is metered; middleware reads it from the
matched route.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import orjson
from aiohttp import web

from izzi_proxy import relay, selection, tokens
from izzi_proxy.access import check_model, model_allowed, plan_of
from izzi_proxy.catalog import ModelEntry
from izzi_proxy.dialects import ClientDialect, ParsedRequest
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.errors import NotFound, UpstreamError
from izzi_proxy.exchange import Exchange
from izzi_proxy.keys import API_KEY, BILL, BILLING, BODY, CONFIG, LEDGER, LIMITER, RECORD, REQUEST_ID, ROUTER
from izzi_proxy.masking import mask_secrets
from izzi_proxy.routes import Handler, endpoint

TOKEN_COUNT_HEADER = "x-izzi-token-count"
MODEL_HEADER = "x-izzi-model"


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


def choose(request: web.Request, dialect: ClientDialect, parsed: ParsedRequest) -> tuple[ModelEntry, int]:
    """The catalog model that serves the request: the one it names, or (``auto``) the one
    its selection picks (``selection``); refused here if the input cannot fit its window.
    With it, the input's estimate in tokens (the hold's)."""
    config, key = request.app[CONFIG], request[API_KEY]
    entry = resolve(request, parsed.model)
    check_model(config.limits, key, entry)
    as_canonical = functools.cache(lambda: dialect.to_canonical(parsed))  # only if asked
    estimate = tokens.estimate_raw(parsed.raw)
    if entry.select is not None:
        output = parsed.max_output_tokens or config.billing.default_max_output_tokens
        entry = selection.select(
            entry,
            config.catalog,
            selection.Needs.of(as_canonical(), estimate, output),
            allowed=lambda m: model_allowed(config.limits, key, m),
            healthy=request.app[ROUTER].healthy,
            plan_tiers=plan_of(config.limits, key).tiers,
        )
    selection.check_context(entry, estimate, as_canonical)
    return entry, estimate


async def add_model_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: which catalog model served the answer (``x-izzi-model``),
    when it is not the one the client named (``auto``, an alias, a family)."""
    record = request.get(RECORD)
    if record is not None and record.model and record.model != record.requested_model:
        response.headers[MODEL_HEADER] = record.model


@dataclass(slots=True)
class Generated:
    response: web.StreamResponse
    exchange: Exchange  # which upstream answered, and the answer as the client got it


async def generate(request: web.Request, dialect: ClientDialect, parsed: ParsedRequest) -> Generated:
    """Route a parsed request, relay the answer (passthrough or translated), meter it."""
    record = request[RECORD]
    entry, estimate = choose(request, dialect, parsed)
    record.model, record.requested_model, record.stream = entry.id, parsed.model, parsed.stream
    billing = request.app[BILLING]
    bill = request[BILL] = billing.bill(request[API_KEY], entry, parsed, estimate)
    await billing.hold(bill, entry, parsed, record)  # durable before the upstream is asked
    headers = dialect.forward_headers(request.headers)
    try:
        exchange = await request.app[ROUTER].send(entry, dialect, parsed, request[REQUEST_ID], headers)
    except UpstreamError as err:
        record.attempts = err.attempts
        if err.tried:
            record.extra["failovers"] = list(err.tried)
        raise
    bill.answered = True
    record.upstream, record.upstream_model = exchange.route.upstream, exchange.route.model
    record.attempts = exchange.attempts
    if exchange.tried:
        record.extra["failovers"] = list(exchange.tried)  # what happened before this answer
    if parsed.stream:
        meter = relay.Meter(billing, bill, dialect.name)
        return Generated(await relay.relay_stream(request, exchange, record, meter), exchange)
    return Generated(await relay.relay_body(exchange, record, bill), exchange)


def generation(dialect: ClientDialect) -> Handler:
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
    headers = ANTHROPIC_MESSAGES.forward_headers(request.headers)
    exact = await count_exact(request, entry, parsed.model, parsed.body, headers)
    counted = exact if exact is not None else tokens.estimate_messages_body(parsed.body)
    return json_response({"input_tokens": counted}, headers={TOKEN_COUNT_HEADER: count_kind(exact)})


def count_kind(exact: int | None) -> str:
    """``x-izzi-token-count``: whether an upstream counted (``exact``) or the gateway estimated."""
    return "estimated" if exact is None else "exact"


async def count_exact(
    request: web.Request,
    entry: ModelEntry,
    asked: str,
    body: dict,
    headers: dict[str, str],
    wire: str = "anthropic_messages",
) -> int | None:
    """The input tokens of ``body`` (in ``wire``) for ``entry``, counted by the first of the
    model's upstreams that counts and answers; None if none does. The request's record names
    the model (and the upstream that counted)."""
    record = request[RECORD]
    record.model, record.requested_model = entry.id, asked
    counters = request.app[ROUTER].token_counters(entry, wire)
    for i, (route, counter) in enumerate(counters):
        try:
            counted = await counter.count_tokens({**body, "model": route.model}, headers)
        except UpstreamError as err:
            if err.retryable and i < len(counters) - 1:
                continue
            raise
        record.upstream, record.upstream_model = route.upstream, route.model
        return counted
    return None


@endpoint(OPENAI_CHAT, public=True)
async def health(request: web.Request) -> web.Response:
    """``GET /healthz``: the process is up (liveness)."""
    return json_response({"status": "ok"})


READY_TIMEOUT_S = 2.0


@endpoint(OPENAI_CHAT, public=True)
async def ready(request: web.Request) -> web.Response:
    """``GET /readyz``: the ledger and the limiter answer a round trip each (readiness);
    503 naming what failed otherwise, its error masked."""
    checks = {"ledger": request.app[LEDGER].ping(), "limiter": request.app[LIMITER].ping()}
    found: dict[str, str] = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await check
            found[name] = "ok"
        except TimeoutError:
            found[name] = f"failed: no answer within {READY_TIMEOUT_S:g} s"
        except Exception as exc:
            found[name] = f"failed: {mask_secrets(str(exc) or type(exc).__name__)}"
    ok = all(value == "ok" for value in found.values())
    return json_response({"status": "ready" if ok else "not ready", "checks": found}, status=200 if ok else 503)


def json_response(data: object, headers: dict[str, str] | None = None, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)
