"""The operator's view (``/dashboard/admin``), signed in with the admin token: traffic and
spend over time, cache savings, upstream health, recent errors and open holds; accounts
with their plans, overrides, keys and top-ups; every request's record.

Every change goes through ``operations.py``, the same checks the admin API makes. A top-up
form carries an idempotency key drawn when the form is drawn, so sending it twice (a
double click, a reload) credits once.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from izzi_proxy import operations
from izzi_proxy.access import CREDIT_OVERRIDES
from izzi_proxy.admin_cli import describe_plan
from izzi_proxy.catalog import TIERS
from izzi_proxy.config import LIMIT_NAMES
from izzi_proxy.dashboard import usage
from izzi_proxy.dashboard.charts import bars_chart, days_chart
from izzi_proxy.dashboard.pages import ROOT, choice, field, key_form, page, render
from izzi_proxy.dashboard.sessions import OPERATOR
from izzi_proxy.errors import InvalidRequest
from izzi_proxy.keys import CONFIG, LEDGER, RECENT_ERRORS, ROUTER

GROUPS = ("model", "account", "upstream")
RECENT = 15
RECORDS = 200


def _account_url(name: str, anchor: str = "") -> str:
    return f"{ROOT}/admin/accounts/{quote(name, safe='')}{anchor}"


def _days(request: web.Request, default: str = "30") -> int:
    return int(choice(request, "days", tuple(str(d) for d in usage.RANGES), default))


@page(OPERATOR)
async def overview(request: web.Request) -> web.StreamResponse:
    ledger, config = request.app[LEDGER], request.app[CONFIG]
    days, by = _days(request), choice(request, "by", GROUPS, "model")
    metric_name = choice(request, "metric", tuple(usage.METRICS), "cost")
    metric = usage.METRICS[metric_name]
    since, dates = usage.days_back(days)
    daily = await ledger.usage_summary(by, since, daily=True)
    groups = usage.per_group(daily)
    by_model = groups if by == "model" else await ledger.usage_summary("model", since)
    series = usage.series(daily, dates, metric)
    cache = usage.cache_use(by_model, config.catalog)
    names = {a.id: a.name for a in await ledger.list_accounts()}
    return render(
        request, "operator/overview.html",
        days=days, by=by, metric_name=metric_name, metric=metric, groups=GROUPS, metrics=usage.METRICS,
        ranges=usage.RANGES, total=usage.total(groups), series=series,
        over_time=days_chart(dates, series, metric.fmt, f"{metric.label} per day by {by}"),
        ranked=bars_chart(usage.ranked(groups, metric), metric.fmt, f"{metric.label} by {by}"),
        cache=cache, cache_total=usage.cache_total(cache),
        upstreams=request.app[ROUTER].view(),
        failed=await ledger.usage_records(limit=RECENT, failed=True), names=names,
        recent_errors=list(reversed(request.app[RECENT_ERRORS]))[:RECENT],
        holds=await ledger.open_holds(),
    )  # fmt: skip


@page(OPERATOR)
async def accounts(request: web.Request) -> web.StreamResponse:
    ledger, config = request.app[LEDGER], request.app[CONFIG]
    rows = [(a, await ledger.balance_of(a.id)) for a in await ledger.list_accounts()]
    keys = await ledger.list_keys()
    return render(request, "operator/accounts.html", rows=rows, plans=config.limits.plans,
                  default_plan=config.limits.default_plan,
                  live_keys={a.id: sum(1 for k in keys if k.account_id == a.id and k.revoked_at is None)
                             for a, _ in rows})  # fmt: skip


@page(OPERATOR)
async def create_account(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    created = await operations.create_account(
        request.app[LEDGER], request.app[CONFIG], field(form, "name") or "", field(form, "plan"), None
    )
    raise web.HTTPSeeOther(_account_url(created.name))


async def _account_page(request: web.Request, name: str, status: int = 200, **extra: Any) -> web.Response:
    ledger, config = request.app[LEDGER], request.app[CONFIG]
    account = await operations.account(ledger, name)
    since, dates = usage.days_back(30)
    daily = await ledger.usage_summary("model", since, account_id=account.id, daily=True)
    series = usage.series(daily, dates, usage.METRICS["cost"])
    now = time.time()
    plan = config.limits.plans.get(account.plan)
    window_limit = account.overrides.get("credits_per_5h", plan.credits_per_5h if plan else None)
    return render(
        request, "operator/account.html", status,
        month_spent=await ledger.month_spend(account.id, now), budget=account.overrides.get("monthly_budget"),
        window_spent=sum(amount for _, amount in await ledger.window_spend(account.id, now)),
        window_limit=window_limit,
        account=account, plan_summary=describe_plan(config, account.plan, account.overrides),
        plans=config.limits.plans, balance=await ledger.balance_of(account.id),
        keys=await ledger.list_keys(account.id), credits=await ledger.credit_entries(account.id),
        holds=await ledger.open_holds(account.id),
        records=await ledger.usage_records(limit=RECENT, account_id=account.id),
        spend=days_chart(dates, series, usage.METRICS["cost"].fmt, "Cost per day by model"), series=series,
        limit_names=LIMIT_NAMES, credit_names=CREDIT_OVERRIDES, tiers=TIERS,
        models=[e.id for e in config.catalog], idempotency_key=secrets.token_urlsafe(18),
        credited=request.query.get("credited"), now=now, **extra,
    )  # fmt: skip


@page(OPERATOR)
async def account(request: web.Request) -> web.StreamResponse:
    return await _account_page(request, request.match_info["name"])


@page(OPERATOR)
async def update_account(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    overrides: dict[str, Any] = {name: value for name in (*LIMIT_NAMES, *CREDIT_OVERRIDES)
                                 if (value := field(form, name)) is not None}  # fmt: skip
    if tiers := [t for t in form.getall("tiers", []) if isinstance(t, str)]:
        overrides["tiers"] = tiers
    updated = await operations.update_account(
        request.app[LEDGER], request.app[CONFIG], request.match_info["name"], field(form, "plan"), overrides,
        replace=True,
    )  # fmt: skip
    raise web.HTTPSeeOther(_account_url(updated.name))


@page(OPERATOR)
async def create_key(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    key, secret = await operations.create_key(
        request.app[LEDGER], request.app[CONFIG], name, *key_form(await request.post())
    )
    # the page itself shows the key, once: no redirect could carry it without storing it
    return await _account_page(request, name, 201, new_key=key, new_secret=secret)


@page(OPERATOR)
async def revoke_key(request: web.Request) -> web.StreamResponse:
    await operations.revoke_key(request.app[LEDGER], request.match_info["key_id"])
    raise web.HTTPSeeOther(_account_url(request.match_info["name"], "#keys"))


@page(OPERATOR)
async def top_up(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    entry, _, _ = await operations.top_up(
        request.app[LEDGER], request.match_info["name"], field(form, "amount") or "",
        field(form, "bonus_pct") or "0", field(form, "note"), field(form, "idempotency_key"),
    )  # fmt: skip
    raise web.HTTPSeeOther(_account_url(request.match_info["name"], f"?credited={entry.id}#credits"))


@page(OPERATOR)
async def records(request: web.Request) -> web.StreamResponse:
    ledger = request.app[LEDGER]
    name = request.query.get("account") or None
    account_id = (await operations.account(ledger, name)).id if name else None
    failed = request.query.get("failed") == "1"
    rows = await ledger.usage_records(limit=RECORDS, account_id=account_id, failed=failed)
    names = {a.id: a.name for a in await ledger.list_accounts()}
    return render(request, "operator/records.html", rows=rows, names=names, account=name, failed=failed)


@page(OPERATOR)
async def reset_upstream(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    health = request.app[ROUTER].health.get(name)
    if health is None:
        raise InvalidRequest(f"No upstream {name!r} is in use")
    health.reset()
    raise web.HTTPSeeOther(f"{ROOT}/admin#upstreams")
