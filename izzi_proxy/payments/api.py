"""Payments over HTTP: the providers' webhooks, a user's own top-ups, the operator's view.

    POST /payments/{provider}/webhook             a provider's notification (public; verified by the plugin)
    GET  /v1/payments/quote?amount=               the providers and the bonus an amount gets, before paying
    POST /v1/payments                             {"amount", "provider"}: a new top-up and how to pay it
    GET  /v1/payments                             the key's account's payments
    GET  /v1/payments/{id}                        one of them
    GET  /admin/payments[?state=&account=]        every payment
    GET  /admin/payments/{id}                     one, with its notifications and its credit entries
    POST /admin/payments/{id}/assign              {"account"}: an unmatched payment credited to an account
    POST /admin/payments/{provider}/transactions  {"transaction_id", "amount", "reference"?, "note"?}: a
                                                  transfer the operator saw arrive (marketplace balance)

Amounts are decimal strings of credits; errors in OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from izzi_proxy import operations
from izzi_proxy.configure_api import public_url
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.errors import (
    AuthenticationFailed,
    BodyTimeout,
    InvalidRequest,
    NotFound,
    PaymentProviderError,
    RequestTooLarge,
)
from izzi_proxy.handlers import json_response
from izzi_proxy.json_body import amount, field, json_object
from izzi_proxy.keys import API_KEY, CLIENT_IP, CONFIG, LEDGER, PAYMENTS
from izzi_proxy.ledger import PAYMENT_STATES, Payment, PaymentEvent
from izzi_proxy.payments import PaymentUnavailable, WebhookRejected, load_kind
from izzi_proxy.payments.flow import Outcome, Payments
from izzi_proxy.pricing import credits
from izzi_proxy.routes import endpoint

log = logging.getLogger("izzi.payments")
SWEEP_S = 60.0
MAX_WEBHOOK_BYTES = 256 * 1024
_MONEY = ("credits", "paid", "bonus", "credited")


def payment_view(p: Payment) -> dict[str, Any]:
    view = dataclasses.asdict(p)
    view["object"] = "payment"
    for name in _MONEY:
        if isinstance(view[name], int):
            view[name] = credits(view[name])
    return view


def event_view(e: PaymentEvent) -> dict[str, Any]:
    return dataclasses.asdict(e)


def outcome_view(o: Outcome) -> dict[str, Any]:
    return dataclasses.asdict(o)


async def open_payments(app: web.Application) -> AsyncIterator[None]:
    """The configured payment providers, loaded at start (a mistake stops it), and the sweep
    that expires unpaid top-ups and credits any a stopped process left paid."""
    config = app[CONFIG].payments
    async with aiohttp.ClientSession(trust_env=False) as session:
        providers = {name: load_kind(pc).from_config(pc, session) for name, pc in config.providers.items()}
        payments = app[PAYMENTS] = Payments(app[LEDGER], config, providers)
        sweeper = asyncio.create_task(_sweep(payments), name="izzi-payment-sweep") if providers else None
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await payments.aclose()


async def _sweep(payments: Payments) -> None:
    while True:
        try:
            await payments.sweep()
        except Exception:
            log.exception("payment sweep failed; trying again in %d s", SWEEP_S)
        await asyncio.sleep(SWEEP_S)


def _text(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    """A string field, stripped; a blank one is a missing one."""
    value = field(body, name, str, required)
    if value is not None and not value.strip():
        raise InvalidRequest(f"{name!r} is blank", param=name)
    return value.strip() if value is not None else None


@endpoint(OPENAI_CHAT, public=True, signed=True)
async def webhook(request: web.Request) -> web.Response:
    """A provider's notification. No key: the plugin checks its signature; the IP rules
    apply (``signed``), so a notification the provider did not sign counts as a failed
    authentication of its IP, and enough of them block it."""
    config = request.app[CONFIG]
    payments = request.app[PAYMENTS]
    name = request.match_info["provider"]
    payments.provider(name)  # 404 before reading the body
    body = await _read(request, config.server.body_timeout_s)
    try:
        outcomes = await payments.webhook(name, request.headers, body, request.get(CLIENT_IP) or request.remote or "-")
    except WebhookRejected as err:
        if err.status == 400:
            raise InvalidRequest(f"The notification cannot be read: {err}") from None
        raise AuthenticationFailed(f"The notification is not signed by {name}: {err}") from None
    return json_response({"success": True, "data": [outcome_view(o) for o in outcomes]})


async def _read(request: web.Request, timeout_s: float) -> bytes:
    """The body, bounded in size (a notification is small) and in time."""
    if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
        raise RequestTooLarge(f"A notification is at most {MAX_WEBHOOK_BYTES} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_chunked(MAX_WEBHOOK_BYTES):
                body += chunk
                if len(body) > MAX_WEBHOOK_BYTES:
                    raise RequestTooLarge(f"A notification is at most {MAX_WEBHOOK_BYTES} bytes")
    except TimeoutError:
        raise BodyTimeout(f"The notification's body did not arrive within {timeout_s:g} s") from None
    return bytes(body)


def _quote(payments: Payments, amount: str | int) -> dict[str, Any]:
    micro = payments.amount_of(amount)
    bonus = payments.bonus_of(micro)
    return {"amount": credits(micro), "bonus": credits(bonus), "total": credits(micro + bonus)}


def ladder(payments: Payments) -> list[dict[str, str]]:
    return [{"from": credits(start), "percent": pct} for start, pct in payments.config.bonus]


@endpoint(OPENAI_CHAT)
async def quote(request: web.Request) -> web.Response:
    payments = request.app[PAYMENTS]
    config = payments.config
    view: dict[str, Any] = {
        "providers": list(payments.providers),
        "bonus": ladder(payments),
        "min": credits(config.min_credits),
        "max": credits(config.max_credits),
    }
    if "amount" in request.query:
        view.update(_quote(payments, request.query["amount"]))
    return json_response(view)


async def start(request: web.Request, account_id: int, amount: str | int, provider: str) -> Payment:
    """A top-up started from the API or the dashboard."""
    account = await request.app[LEDGER].get_account_by_id(account_id)
    if account is None:
        raise NotFound("The key's account is gone")
    try:
        return await request.app[PAYMENTS].start(account, provider, amount, public_url(request))
    except PaymentUnavailable as err:
        raise PaymentProviderError(f"The payment provider {provider!r} could not make the invoice: {err}") from None


@endpoint(OPENAI_CHAT)
async def create(request: web.Request) -> web.Response:
    body = json_object(request)
    provider = _text(body, "provider", required=True)
    payment = await start(request, request[API_KEY].account_id, amount(body), provider or "")
    return json_response(payment_view(payment), status=201)


@endpoint(OPENAI_CHAT)
async def mine(request: web.Request) -> web.Response:
    rows = await request.app[LEDGER].list_payments(account_id=request[API_KEY].account_id)
    return json_response({"object": "list", "data": [payment_view(p) for p in rows]})


@endpoint(OPENAI_CHAT)
async def one_of_mine(request: web.Request) -> web.Response:
    payment = await request.app[PAYMENTS].get(request.match_info["payment_id"])
    if payment.account_id != request[API_KEY].account_id:
        raise NotFound(f"No payment {request.match_info['payment_id']!r}", param="payment")
    return json_response(payment_view(payment))


admin = endpoint(OPENAI_CHAT, admin=True)


@admin
async def list_all(request: web.Request) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in PAYMENT_STATES:
        raise InvalidRequest(f"'state' takes one of {', '.join(PAYMENT_STATES)}, got {state!r}", param="state")
    account_id = None
    if name := request.query.get("account"):
        account_id = (await operations.account(request.app[LEDGER], name)).id
    rows = await request.app[LEDGER].list_payments(account_id=account_id, state=state, limit=1000)
    return json_response({"object": "list", "data": [payment_view(p) for p in rows]})


async def details(payments: Payments, p: Payment) -> dict[str, Any]:
    """A payment with its notifications and the ledger's credit entries for it."""
    events = await payments.ledger.payment_events(p.id)
    keys = {f"payment:{p.id}", f"payment:{p.id}:bonus"}
    entries = []
    if p.account_id is not None:
        entries = [e for e in await payments.ledger.credit_entries(p.account_id) if e.idempotency_key in keys]
    return {
        **payment_view(p),
        "events": [event_view(e) for e in events],
        "credit_entries": [
            {**dataclasses.asdict(e), "amount": credits(e.amount), "bonus": credits(e.bonus)} for e in entries
        ],
    }


@admin
async def show(request: web.Request) -> web.Response:
    payments = request.app[PAYMENTS]
    return json_response(await details(payments, await payments.get(request.match_info["payment_id"])))


@admin
async def assign(request: web.Request) -> web.Response:
    body = json_object(request)
    account = await operations.account(request.app[LEDGER], _text(body, "account", required=True) or "")
    payment = await request.app[PAYMENTS].assign(request.match_info["payment_id"], account)
    return json_response(payment_view(payment))


@admin
async def record(request: web.Request) -> web.Response:
    body = json_object(request)
    outcome = await request.app[PAYMENTS].record(
        request.match_info["provider"], _text(body, "transaction_id", required=True) or "", amount(body),
        _text(body, "reference"), _text(body, "note"),
    )  # fmt: skip
    return json_response(outcome_view(outcome), status=201)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/payments/{provider}/webhook", webhook)
    r.add_get("/v1/payments/quote", quote)
    r.add_post("/v1/payments", create)
    r.add_get("/v1/payments", mine)
    r.add_get("/v1/payments/{payment_id}", one_of_mine)
    r.add_get("/admin/payments", list_all)
    r.add_get("/admin/payments/{payment_id}", show)
    r.add_post("/admin/payments/{payment_id}/assign", assign)
    r.add_post("/admin/payments/{provider}/transactions", record)
