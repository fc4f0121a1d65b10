"""Top-ups on the dashboard: a user starts one from their view and watches it land; the
operator sees every payment, its notifications and credit entries, and assigns money
that matched nothing.

    POST /dashboard/me/topups                       start a top-up (amount, provider)
    GET  /dashboard/me/payments/{id}                how to pay it (QR code, bank details, a link) and its state
    GET  /dashboard/admin/payments                  every payment (?state=)
    GET  /dashboard/admin/payments/{id}             one, with its notifications and credit entries
    POST /dashboard/admin/payments/{id}/assign      an unmatched payment credited to an account

Everything goes through ``payments/flow.py``, as the API does. A QR code (a VietQR bank
transfer) is drawn on the server as a PNG in the page itself: no script, no third party.
"""

from __future__ import annotations

from aiohttp import web

from izzi_proxy import operations
from izzi_proxy.dashboard.pages import ROOT, choice, field, page, render
from izzi_proxy.dashboard.qr import png_data_uri
from izzi_proxy.dashboard.sessions import OPERATOR, USER
from izzi_proxy.errors import InvalidRequest, NotFound
from izzi_proxy.keys import LEDGER, PAYMENTS
from izzi_proxy.ledger import PAYMENT_STATES, ApiKey
from izzi_proxy.payments.api import details, ladder, start
from izzi_proxy.payments.flow import OPEN

LISTED = 200


def offer(request: web.Request) -> dict:
    """What the user's top-up form shows: the providers, the limits and the bonus ladder."""
    payments = request.app[PAYMENTS]
    return {"providers": list(payments.providers), "ladder": ladder(payments), "config": payments.config}


@page(USER)
async def start_topup(request: web.Request, key: ApiKey) -> web.StreamResponse:
    form = await request.post()
    amount, provider = field(form, "amount"), field(form, "provider")
    if amount is None:
        raise InvalidRequest("Say how many credits to buy", param="amount")
    payment = await start(request, key.account_id, amount, provider or "")
    raise web.HTTPSeeOther(f"{ROOT}/me/payments/{payment.id}")


@page(USER)
async def show_mine(request: web.Request, key: ApiKey) -> web.StreamResponse:
    payment = await request.app[PAYMENTS].get(request.match_info["payment_id"])
    if payment.account_id != key.account_id:
        raise NotFound(f"You have no payment {request.match_info['payment_id']!r}")
    qr = payment.details.get("qr_payload")
    return render(request, "user/payment.html", payment=payment, qr=png_data_uri(qr) if isinstance(qr, str) else None,
                  waiting=payment.state in OPEN)  # fmt: skip


@page(OPERATOR)
async def listing(request: web.Request) -> web.StreamResponse:
    state = choice(request, "state", PAYMENT_STATES, "") or None
    ledger = request.app[LEDGER]
    rows = await ledger.list_payments(state=state, limit=LISTED)
    names = {a.id: a.name for a in await ledger.list_accounts()}
    return render(request, "operator/payments.html", rows=rows, names=names, state=state, states=PAYMENT_STATES)


@page(OPERATOR)
async def show(request: web.Request) -> web.StreamResponse:
    ledger = request.app[LEDGER]
    payments = request.app[PAYMENTS]
    view = await details(payments, await payments.get(request.match_info["payment_id"]))
    names = {a.id: a.name for a in await ledger.list_accounts()}
    return render(request, "operator/payment.html", p=view, names=names)


@page(OPERATOR)
async def assign(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    account = await operations.account(request.app[LEDGER], field(form, "account") or "")
    payment = await request.app[PAYMENTS].assign(request.match_info["payment_id"], account)
    raise web.HTTPSeeOther(f"{ROOT}/admin/payments/{payment.id}")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(f"{ROOT}/me/topups", start_topup)
    r.add_get(f"{ROOT}/me/payments/{{payment_id}}", show_mine)
    r.add_get(f"{ROOT}/admin/payments", listing)
    r.add_get(f"{ROOT}/admin/payments/{{payment_id}}", show)
    r.add_post(f"{ROOT}/admin/payments/{{payment_id}}/assign", assign)
