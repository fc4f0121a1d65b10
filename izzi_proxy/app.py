"""``create_app(config)``: state, lifecycle, middleware and routes. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from izzi_proxy import (
    account_api,
    admin_api,
    configure_api,
    dashboard,
    gemini_api,
    handlers,
    metrics,
    middleware,
    models_api,
    openapi,
    relay,
    responses_api,
    serving,
)
from izzi_proxy.billing import Billing
from izzi_proxy.config import Config
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.keys import (
    BILLING,
    BLOCKED_IPS,
    CONFIG,
    LEASES,
    LEDGER,
    LIMITER,
    LOAD,
    METRICS,
    ROUTER,
    SESSION,
    STREAMS,
    USAGE_WRITER,
    Load,
)  # fmt: skip
from izzi_proxy.ledger import open_ledger
from izzi_proxy.ledger.writer import UsageWriter
from izzi_proxy.limiter import open_limiter
from izzi_proxy.limiter.guard import GuardedLimiter
from izzi_proxy.limiter.leases import LeaseKeeper
from izzi_proxy.middleware import body
from izzi_proxy.middleware.metering import add_cost_headers
from izzi_proxy.middleware.rate_limit import add_rate_headers
from izzi_proxy.middleware.request_log import add_request_id
from izzi_proxy.payments import api as payments_api
from izzi_proxy.providers import Registry, build_upstreams, registry
from izzi_proxy.router import Router

PREFIXES = ("/v1", "/openai/v1", "/api/v1")


def create_app(config: Config, *, providers: Registry = registry) -> web.Application:
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=middleware.build(config),
        handler_args={"max_field_size": 16384},
    )
    app[CONFIG] = config
    # Upstreams first: a config mistake found while building them stops the start before
    # anything else (the ledger's worker thread) is running.
    app.cleanup_ctx.append(lambda app: _upstreams(app, providers))
    app.cleanup_ctx.append(_ledger)
    app.cleanup_ctx.append(_limiter)
    app.cleanup_ctx.append(responses_api.purge_expired)
    app.cleanup_ctx.append(payments_api.open_payments)
    app[STREAMS] = set()
    app[METRICS] = metrics.Metrics()
    app[BLOCKED_IPS] = {}
    app[LOAD] = Load()
    app.on_response_prepare.append(add_request_id)
    app.on_response_prepare.append(add_rate_headers)
    app.on_response_prepare.append(add_cost_headers)
    app.on_response_prepare.append(handlers.add_model_header)
    app.on_response_prepare.append(serving.close_when_draining)
    app.on_shutdown.append(relay.stop_streams)
    app.on_shutdown.append(body.stop_reading)

    chat = handlers.generation(OPENAI_CHAT)
    messages = handlers.generation(ANTHROPIC_MESSAGES)
    for prefix in PREFIXES:
        app.router.add_post(f"{prefix}/chat/completions", chat)
        app.router.add_post(f"{prefix}/messages", messages)
        app.router.add_post(f"{prefix}/messages/count_tokens", handlers.count_tokens)
        app.router.add_post(f"{prefix}/responses", responses_api.create)
        app.router.add_get(f"{prefix}/responses", responses_api.websocket)
        app.router.add_get(f"{prefix}/responses/{{response_id}}", responses_api.retrieve)
        app.router.add_delete(f"{prefix}/responses/{{response_id}}", responses_api.delete)
        app.router.add_get(f"{prefix}/models", models_api.list_models)
        app.router.add_get(f"{prefix}/models/{{model:.+}}", models_api.get_model)
        app.router.add_get(f"{prefix}/me", account_api.me)
    gemini_api.add_routes(app)
    app.router.add_get("/v1beta/models", models_api.list_gemini_models)
    app.router.add_get("/v1beta/models/{model:[^/:]+}", models_api.get_gemini_model)
    admin_api.add_routes(app)
    payments_api.add_routes(app)
    dashboard.setup(app, config)
    app.router.add_get("/healthz", handlers.health)
    app.router.add_get("/readyz", handlers.ready)
    app.router.add_get("/openapi.json", openapi.serve)
    app.router.add_get("/configure.py", configure_api.serve)
    if config.server.metrics != "off":
        app.router.add_get(
            "/metrics", metrics.serve_public if config.server.metrics == "public" else metrics.serve_admin
        )
    return app


async def _ledger(app: web.Application) -> AsyncIterator[None]:
    storage = app[CONFIG].storage
    app[LEDGER] = await open_ledger(storage.database_url, storage.key_cache_s)
    app[USAGE_WRITER] = UsageWriter(app[LEDGER])
    app[USAGE_WRITER].start()
    app[BILLING] = Billing(app[CONFIG], app[LEDGER], app[USAGE_WRITER])
    app[BILLING].start()
    yield
    await app[BILLING].aclose()
    await app[USAGE_WRITER].aclose()
    await app[LEDGER].aclose()


async def _limiter(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    storage = config.storage
    backend = await open_limiter(storage.limiter_url, storage.limiter_pool_size, storage.limiter_pool_timeout_s)
    app[LIMITER] = GuardedLimiter(backend, config.limits.on_limiter_failure)
    app[LEASES] = LeaseKeeper(app[LIMITER], config.limits.lease_ttl_s)
    app[LEASES].start()
    yield
    await app[LEASES].aclose()
    await app[LIMITER].aclose()


async def _upstreams(app: web.Application, providers: Registry) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        app[SESSION] = session
        upstreams = build_upstreams(app[CONFIG], session, providers)
        app[ROUTER] = Router(upstreams, app[CONFIG])
        yield
        await upstreams.aclose()
