"""The user's view (``/dashboard/me``), signed in with their own API key: plan and limits
with what is left of each now, balance, spend per day and per model, every request with its
tokens, cache tokens and cost, their keys, and the one-line setup of each coding tool.

It reads what ``GET /v1/me`` answers (``account_api.account_status``) and the ledger's
records of the account, nobody else's.
"""

from __future__ import annotations

import time

from aiohttp import web

from izzi_proxy.account_api import account_status
from izzi_proxy.configure import TOOLS
from izzi_proxy.configure_api import public_url
from izzi_proxy.dashboard import usage
from izzi_proxy.dashboard.charts import bars_chart, days_chart
from izzi_proxy.dashboard.pages import choice, page, render
from izzi_proxy.dashboard.sessions import USER
from izzi_proxy.keys import CONFIG, LEDGER
from izzi_proxy.ledger import ApiKey

RECORDS = 100


def setup_lines(url: str) -> list[tuple[str, str]]:
    """(tool, command): the configure script asks for the key without echo, so no key lands
    in the shell's history."""
    fetch = f"curl -fsSL {url}/configure.py | python3 -"
    return [("Every tool found on this machine", fetch), *((t.name, f'{fetch} --only "{t.name}"') for t in TOOLS)]


@page(USER)
async def me(request: web.Request, key: ApiKey) -> web.StreamResponse:
    ledger, config = request.app[LEDGER], request.app[CONFIG]
    days = int(choice(request, "days", tuple(str(d) for d in usage.RANGES), "30"))
    since, dates = usage.days_back(days)
    cost = usage.METRICS["cost"]
    by_model = await ledger.usage_summary("model", since, account_id=key.account_id)
    series = usage.series(await ledger.usage_summary("model", since, account_id=key.account_id, daily=True),
                          dates, cost)  # fmt: skip
    cache = usage.cache_use(by_model, config.catalog)
    url = public_url(request)
    return render(
        request, "user/me.html",
        key=key, standing=await account_status(request.app, key, time.time()), days=days, ranges=usage.RANGES,
        total=usage.total(by_model), series=series,
        spend=days_chart(dates, series, cost.fmt, "Spend per day by model"),
        per_model=bars_chart(usage.ranked(by_model, cost), cost.fmt, "Spend by model"),
        cache_total=usage.cache_total(cache),
        records=await ledger.usage_records(limit=RECORDS, account_id=key.account_id),
        keys=await ledger.list_keys(key.account_id), now=time.time(),
        url=url, setup=setup_lines(url),
    )  # fmt: skip
