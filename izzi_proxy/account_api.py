"""``GET /v1/me``: what a key's owner may see about their own account.

Plan and limits, where the request limits stand now (per minute, in flight, per day), the
balance with what requests in flight hold, what is left of the plan's credits per 5 hours
and of the monthly budget, and today's usage (UTC). Amounts are
decimal strings of credits (``"12.345678"``); times are Unix seconds.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from izzi_proxy.access import limits_for
from izzi_proxy.billing import spend_limits
from izzi_proxy.catalog import TIERS
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.handlers import json_response
from izzi_proxy.keys import API_KEY, CONFIG, LEDGER, LIMITER
from izzi_proxy.ledger import BUCKET_S, WINDOW_S, ApiKey, Balance, Ledger, UsageSummary
from izzi_proxy.pricing import credits
from izzi_proxy.routes import endpoint

DAY_S = 86400


def balance_view(balance: Balance) -> dict[str, Any]:
    return {
        "balance": credits(balance.balance),
        "held": credits(balance.held),
        "available": credits(balance.available),
        "open_holds": balance.holds,
    }


def summary_view(row: UsageSummary | None) -> dict[str, Any]:
    fields = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "reasoning_tokens")  # fmt: skip
    view: dict[str, Any] = {name: getattr(row, name) if row else 0 for name in fields}
    view["cost"] = credits(row.cost if row else 0)
    view["unbilled"] = credits(row.unbilled if row else 0)
    return view


async def _window(ledger: Ledger, account_id: int, limit: int | None, held: int, now: float) -> dict[str, Any]:
    buckets = await ledger.window_spend(account_id, now)
    spent = sum(amount for _, amount in buckets)
    view: dict[str, Any] = {"hours": WINDOW_S // 3600, "limit": None, "spent": credits(spent), "remaining": None}
    if limit is not None:
        view.update(limit=credits(limit), remaining=credits(max(0, limit - spent - held)))
    # the oldest charge still counted leaves the window at this time
    view["next_release_at"] = (buckets[0][0] + 1) * BUCKET_S + WINDOW_S if buckets else None
    return view


async def account_status(app: web.Application, key: ApiKey, now: float) -> dict[str, Any]:
    """What ``GET /v1/me`` answers for this key (the dashboard's user view shows the same)."""
    ledger, config = app[LEDGER], app[CONFIG]
    plan, limits = limits_for(config.limits, key)
    standing = await app[LIMITER].peek(str(key.account_id), limits, now)
    spend = spend_limits(config, key)
    balance = await ledger.balance_of(key.account_id)
    month_spent = await ledger.month_spend(key.account_id, now)
    today = now - now % DAY_S
    (summary,) = await ledger.usage_summary("account", today, account_id=key.account_id) or (None,)
    return {
        "object": "account",
        "account": key.account_name,
        "key": {"id": key.id, "name": key.name, "prefix": key.prefix, "expires_at": key.expires_at},
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "tiers": [t for t in TIERS if t in (key.overrides.get("tiers") or plan.tiers)],
            "rpm": limits.rpm,
            "concurrent": limits.concurrent,
            "daily": limits.daily,
            "credits_per_5h": credits(spend.window) if spend.window is not None else None,
        },
        "now": {  # where the request limits stand (this minute's bucket, leases, today's count)
            "rpm_remaining": standing.remaining,
            "rpm_full_at": standing.reset_at,
            "in_flight": standing.in_flight,
            "concurrent_remaining": max(0, limits.concurrent - standing.in_flight),
            "requests_today": standing.used_today,
            "daily_remaining": max(0, limits.daily - standing.used_today),
            "degraded": standing.degraded,
        },
        **balance_view(balance),
        "window": await _window(ledger, key.account_id, spend.window, balance.held, now),
        "month": {
            "budget": credits(spend.month) if spend.month is not None else None,
            "spent": credits(month_spent),
            "remaining": credits(max(0, spend.month - month_spent - balance.held)) if spend.month is not None else None,
        },
        "today": {"since": today, **summary_view(summary)},
    }


@endpoint(OPENAI_CHAT)
async def me(request: web.Request) -> web.Response:
    return json_response(await account_status(request.app, request[API_KEY], time.time()))
