"""The operator's HTTP API under ``/admin/``, behind ``IZZI_ADMIN_TOKEN`` (``auth.py``).

    GET    /admin/accounts                         every account, with its balance
    POST   /admin/accounts                         {"name", "plan"?, "overrides"?}
    GET    /admin/accounts/{name}                  plan, balance, open holds, keys
    PATCH  /admin/accounts/{name}                  {"plan"?, "overrides"?}
    POST   /admin/accounts/{name}/keys             {"name", "expires_days"?, "models"?}: the key, once
    GET    /admin/keys[?account=]                  prefixes only
    DELETE /admin/keys/{id}                        revoke
    POST   /admin/accounts/{name}/credits          {"amount", "bonus_pct"?, "note"?} + Idempotency-Key
    GET    /admin/accounts/{name}/credits          the account's top-ups
    GET    /admin/usage[?by=day|model|key|account&since=&until=&account=]
    GET    /admin/records[?account=&limit=]        the latest usage records
    GET    /admin/holds[?account=]                 open holds
    GET    /admin/upstreams                        each upstream's breaker and keys (masked), in this process
    POST   /admin/upstreams/{name}/reset           its breaker closed, its keys usable again (this process)

A top-up with an ``Idempotency-Key`` header is made once: a retried webhook gets the first
answer again (200 instead of 201), and the key used for other figures is a 409. Amounts are
decimal strings of credits; errors are in OpenAI's shape.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web

from izzi_proxy import operations
from izzi_proxy.account_api import balance_view, summary_view
from izzi_proxy.admin_cli import describe_plan
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.errors import InvalidRequest, NotFound
from izzi_proxy.handlers import json_response
from izzi_proxy.json_body import amount, field, json_object
from izzi_proxy.keys import CONFIG, LEDGER, ROUTER
from izzi_proxy.ledger import SUMMARY_GROUPS, Account, ApiKey
from izzi_proxy.pricing import credits
from izzi_proxy.routes import endpoint

admin = endpoint(OPENAI_CHAT, admin=True)
MAX_RECORDS = 1000


async def _account_filter(request: web.Request) -> int | None:
    """The id of the account named by ``?account=`` (404 if none has that name), or None."""
    name = request.query.get("account")
    return (await operations.account(request.app[LEDGER], name)).id if name else None


def _account_view(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "plan": account.plan, "overrides": account.overrides,
            "created_at": account.created_at}  # fmt: skip


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "account": key.account_name, "name": key.name, "prefix": key.prefix,
            "created_at": key.created_at, "expires_at": key.expires_at, "revoked_at": key.revoked_at,
            "models": list(key.allow) if key.allow is not None else None}  # fmt: skip


def _money(record: Any) -> dict[str, Any]:
    view = dataclasses.asdict(record)
    for name in ("amount", "bonus", "cost", "unbilled", "held"):
        if isinstance(view.get(name), int):
            view[name] = credits(view[name])
    return view


@admin
async def list_accounts(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    data = [{**_account_view(a), **balance_view(await ledger.balance_of(a.id))} for a in await ledger.list_accounts()]
    return json_response({"object": "list", "data": data})


@admin
async def create_account(request: web.Request) -> web.Response:
    body = json_object(request)
    account = await operations.create_account(
        request.app[LEDGER], request.app[CONFIG], field(body, "name", str, required=True),
        field(body, "plan", str), body.get("overrides"),
    )  # fmt: skip
    return json_response(_account_view(account), status=201)


@admin
async def get_account(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    account = await operations.account(ledger, request.match_info["name"])
    holds = await ledger.open_holds(account.id)
    return json_response({
        **_account_view(account),
        "plan_summary": describe_plan(request.app[CONFIG], account.plan, account.overrides),
        **balance_view(await ledger.balance_of(account.id)),
        "holds": [_money(h) for h in holds],
        "keys": [_key_view(k) for k in await ledger.list_keys(account.id)],
    })  # fmt: skip


@admin
async def update_account(request: web.Request) -> web.Response:
    body = json_object(request)
    account = await operations.update_account(
        request.app[LEDGER], request.app[CONFIG], request.match_info["name"], field(body, "plan", str),
        body.get("overrides"), replace="overrides" in body,
    )  # fmt: skip
    return json_response(_account_view(account))


@admin
async def create_key(request: web.Request) -> web.Response:
    body = json_object(request)
    key, secret = await operations.create_key(
        request.app[LEDGER], request.app[CONFIG], request.match_info["name"], field(body, "name", str, required=True),
        field(body, "expires_days", (int, float)), field(body, "models", list),
    )  # fmt: skip
    return json_response({**_key_view(key), "key": secret}, status=201)


@admin
async def list_keys(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    account_id = await _account_filter(request)
    return json_response({"object": "list", "data": [_key_view(k) for k in await ledger.list_keys(account_id)]})


@admin
async def revoke_key(request: web.Request) -> web.Response:
    key_id = await operations.revoke_key(request.app[LEDGER], request.match_info["key_id"])
    return json_response({"id": key_id, "revoked": True})


@admin
async def add_credits(request: web.Request) -> web.Response:
    body = json_object(request)
    value = amount(body)
    pct = body.get("bonus_pct", "0")
    if not isinstance(pct, (str, int)) or isinstance(pct, bool):
        raise InvalidRequest("'bonus_pct' takes a percentage, e.g. \"25\"", param="bonus_pct")
    entry, new, balance = await operations.top_up(
        request.app[LEDGER], request.match_info["name"], value, pct, field(body, "note", str),
        request.headers.get("Idempotency-Key"),
    )  # fmt: skip
    return json_response({**_money(entry), "replayed": not new, **balance_view(balance)}, status=201 if new else 200)


@admin
async def list_credits(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    account = await operations.account(ledger, request.match_info["name"])
    return json_response({"object": "list", "data": [_money(e) for e in await ledger.credit_entries(account.id)]})


def _time(request: web.Request, name: str, default: float | None) -> float | None:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise InvalidRequest(f"{name!r} takes Unix seconds, got {value!r}", param=name) from None


@admin
async def usage(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    by = request.query.get("by", "day")
    if by not in SUMMARY_GROUPS:
        raise InvalidRequest(f"'by' takes one of {', '.join(SUMMARY_GROUPS)}, got {by!r}", param="by")
    account_id = await _account_filter(request)
    since = _time(request, "since", time.time() - 7 * 86400) or 0.0
    rows = await ledger.usage_summary(by, since, _time(request, "until", None), account_id)
    return json_response({"object": "list", "by": by, "data": [{"group": r.group, **summary_view(r)} for r in rows]})


@admin
async def records(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    account_id = await _account_filter(request)
    limit = request.query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_RECORDS:
        raise InvalidRequest(f"'limit' takes 1 to {MAX_RECORDS}, got {limit!r}", param="limit")
    rows = await ledger.usage_records(limit=int(limit), account_id=account_id)
    return json_response({"object": "list", "data": [_money(r) for r in rows]})


@admin
async def holds(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    account_id = await _account_filter(request)
    return json_response({"object": "list", "data": [_money(h) for h in await ledger.open_holds(account_id)]})


@admin
async def upstreams(request: web.Request) -> web.Response:
    return json_response({"object": "list", "data": request.app[ROUTER].view()})


@admin
async def reset_upstream(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    health = request.app[ROUTER].health.get(name)
    if health is None:
        raise NotFound(f"No upstream {name!r} is in use; GET /admin/upstreams lists them", param="name")
    health.reset()
    return json_response({"upstream": name, **health.view()})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/accounts", list_accounts)
    r.add_post("/admin/accounts", create_account)
    r.add_get("/admin/accounts/{name}", get_account)
    r.add_patch("/admin/accounts/{name}", update_account)
    r.add_post("/admin/accounts/{name}/keys", create_key)
    r.add_get("/admin/keys", list_keys)
    r.add_delete("/admin/keys/{key_id}", revoke_key)
    r.add_post("/admin/accounts/{name}/credits", add_credits)
    r.add_get("/admin/accounts/{name}/credits", list_credits)
    r.add_get("/admin/usage", usage)
    r.add_get("/admin/records", records)
    r.add_get("/admin/holds", holds)
    r.add_get("/admin/upstreams", upstreams)
    r.add_post("/admin/upstreams/{name}/reset", reset_upstream)
