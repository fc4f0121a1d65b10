"""The user's view (``/dashboard/me``), signed in with their own API key: plan and limits
with what is left of each now, balance, spend per day and per model, every request with its
tokens, cache tokens and cost, their keys (to create and revoke: "get your API key from the
dashboard"), their top-ups (to start one: ``payments.py``), and the one-line setup of each
coding tool.

It reads what ``GET /v1/me`` answers (``account_api.account_status``) and the ledger's
records of the account, nobody else's.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from izzi_proxy import operations
from izzi_proxy.account_api import account_status
from izzi_proxy.catalog import TIERS
from izzi_proxy.configure import TOOLS
from izzi_proxy.configure_api import public_url
from izzi_proxy.dashboard import usage
from izzi_proxy.dashboard.charts import bars_chart, days_chart
from izzi_proxy.dashboard.pages import ROOT, choice, key_form, page, render
from izzi_proxy.dashboard.payments import offer
from izzi_proxy.dashboard.sessions import USER
from izzi_proxy.errors import InvalidRequest, NotFound
from izzi_proxy.keys import CONFIG, LEDGER
from izzi_proxy.ledger import ApiKey

RECORDS = 100
MAX_LIVE_KEYS = 20  # keys a user may hold at once, made by themselves or the operator


def setup_lines(url: str) -> list[tuple[str, str]]:
    """(tool, command): the configure script asks for the key without echo, so no key lands
    in the shell's history."""
    fetch = f"curl -fsSL {url}/configure.py | python3 -"
    return [("Every tool found on this machine", fetch), *((t.name, f'{fetch} --only "{t.name}"') for t in TOOLS)]


@page(USER)
async def me(request: web.Request, key: ApiKey) -> web.StreamResponse:
    return await _page(request, key)


@page(USER)
async def create_key(request: web.Request, key: ApiKey) -> web.StreamResponse:
    ledger = request.app[LEDGER]
    live = [k for k in await ledger.list_keys(key.account_id) if k.live(time.time())]
    if len(live) >= MAX_LIVE_KEYS:
        raise InvalidRequest(f"An account has at most {MAX_LIVE_KEYS} live keys; revoke one first")
    new, secret = await operations.create_key(ledger, request.app[CONFIG], key.account_name,
                                              *key_form(await request.post()))  # fmt: skip
    return await _page(request, key, 201, new_key=new, new_secret=secret)


@page(USER)
async def revoke_key(request: web.Request, key: ApiKey) -> web.StreamResponse:
    """Only the account's own keys; revoking the one signed in with ends this session."""
    ledger, key_id = request.app[LEDGER], request.match_info["key_id"]
    if not any(str(k.id) == key_id for k in await ledger.list_keys(key.account_id)):
        raise NotFound(f"Your account has no key with id {key_id!r}")
    await operations.revoke_key(ledger, key_id)
    raise web.HTTPSeeOther(f"{ROOT}/me#keys")


async def _page(request: web.Request, key: ApiKey, status: int = 200, **extra: Any) -> web.Response:
    ledger, config = request.app[LEDGER], request.app[CONFIG]
    days = int(choice(request, "days", tuple(str(d) for d in usage.RANGES), "30"))
    since, dates = usage.days_back(days)
    cost = usage.METRICS["cost"]
    daily = await ledger.usage_summary("model", since, account_id=key.account_id, daily=True)
    by_model = usage.per_group(daily)
    series = usage.series(daily, dates, cost)
    cache = usage.cache_use(by_model, config.catalog)
    url = public_url(request)
    return render(
        request, "user/me.html", status,
        key=key, standing=await account_status(request.app, key, time.time()), days=days, ranges=usage.RANGES,
        total=usage.total(by_model), series=series,
        spend=days_chart(dates, series, cost.fmt, "Spend per day by model"),
        per_model=bars_chart(usage.ranked(by_model, cost), cost.fmt, "Spend by model"),
        cache_total=usage.cache_total(cache),
        records=await ledger.usage_records(limit=RECORDS, account_id=key.account_id),
        keys=await ledger.list_keys(key.account_id), now=time.time(),
        url=url, setup=setup_lines(url), tiers=TIERS, models=[e.id for e in config.catalog],
        topup=offer(request), payments=await ledger.list_payments(account_id=key.account_id, limit=20), **extra,
    )  # fmt: skip
