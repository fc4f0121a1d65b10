"""Admit each metered request within its account's plan (requests per minute, in flight,
per day) and put where the account stands on every answer.

One limiter call per request before it is handled: ``admit`` for generation routes (which
also holds a lease until the answer ends, stream included, released in the background by
``LeaseKeeper``), ``peek`` for the others. The headers are set on
the request and written by ``add_rate_headers`` in ``on_response_prepare``, so errors and
streams carry them too. Limits apply per account: all of an account's keys share them.
"""

from __future__ import annotations

import functools
import math
import time
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.access import limits_for
from izzi_proxy.config import Config, Plan
from izzi_proxy.errors import IPBlocked, QuotaExceeded, RateLimited
from izzi_proxy.keys import API_KEY, BLOCKED_IPS, CLIENT_IP, LEASES, LIMITER, RATE_HEADERS
from izzi_proxy.limiter import Decision, Limits
from izzi_proxy.middleware.ip_block import remember_block
from izzi_proxy.routes import route_info


@functools.lru_cache(maxsize=256)
def _iso(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_headers(plan: Plan, limits: Limits, decision: Decision) -> dict[str, str]:
    headers = {
        "x-ratelimit-tier": plan.id,
        "x-ratelimit-limit-requests": str(limits.rpm),
        "x-ratelimit-remaining-requests": str(decision.remaining),
        "x-ratelimit-reset-requests": _iso(math.ceil(decision.reset_at)),
        "x-concurrent-limit": str(limits.concurrent),
        "x-concurrent-remaining": str(max(0, limits.concurrent - decision.in_flight)),
    }
    if decision.degraded:
        headers["x-ratelimit-degraded"] = "true"
    return headers


def refuse(plan: Plan, limits: Limits, decision: Decision) -> None:
    wait = decision.retry_after_s
    seconds = max(1, math.ceil(wait))
    if decision.reason == "ip":
        raise IPBlocked(f"Too many failed authentications from this IP: blocked for {seconds} s", retry_after_s=wait)
    if decision.reason == "daily":
        raise QuotaExceeded(
            f"Daily request quota exceeded: the {plan.name} plan allows {limits.daily} requests per day; "
            "it resets at 00:00 UTC",
            retry_after_s=wait,
        )
    if decision.reason == "concurrent":
        raise RateLimited(
            f"Too many requests in flight: the {plan.name} plan allows {limits.concurrent} at once. "
            f"Try again in {seconds} second(s).",
            retry_after_s=wait,
        )
    raise RateLimited(
        f"Rate limit exceeded: the {plan.name} plan allows {limits.rpm} requests per minute. "
        f"Try again in {seconds} second(s).",
        retry_after_s=wait,
    )


def make_rate_limit(config: Config) -> Middleware:
    settings = config.limits

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.get(API_KEY)
        if key is None:
            return await handler(request)
        info = route_info(request)
        bucket = info.limit if info is not None else "requests"
        plan, limits = limits_for(settings, key, bucket)
        limiter, keeper = request.app[LIMITER], request.app[LEASES]
        account, ip = str(key.account_id), request.get(CLIENT_IP)
        if bucket != "requests":
            account = f"{account}:{bucket}"  # its own counters: count_tokens does not spend the day
        if info is None or not info.metered:
            decision = await limiter.peek(account, limits, time.time(), ip)
        else:
            decision = await limiter.admit(account, limits, keeper.new_id(), time.time(), settings.lease_ttl_s, ip)
            if decision.reason == "concurrent" and await keeper.settle(account):  # its own releases, landing
                decision = await limiter.admit(account, limits, keeper.new_id(), time.time(), settings.lease_ttl_s, ip)
        request[RATE_HEADERS] = rate_headers(plan, limits, decision)
        if not decision.allowed:
            if decision.reason == "ip" and ip:
                remember_block(request.app[BLOCKED_IPS], ip, decision.retry_after_s)
            refuse(plan, limits, decision)
        if decision.lease is None:
            return await handler(request)
        keeper.hold(account, decision.lease)
        try:
            return await handler(request)
        finally:
            keeper.release(account, decision.lease)

    return rate_limit


async def add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the account's standing on every answer, streamed or not."""
    if (headers := request.get(RATE_HEADERS)) is not None:
        response.headers.update(headers)
