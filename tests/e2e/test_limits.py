"""Plans and limits on one gateway process (the in-process limiter), with the official SDKs
as clients: headers on every answer, 429s they surface with Retry-After, leases held by
streams, model permissions, IP blocking."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import anthropic
import openai
import pytest

from izzi_proxy.config import load_config
from izzi_proxy.pricing import MICRO
from tests.conftest import Gateway, start_gateway, write_config

HELLO = [{"role": "user", "content": "Hello"}]
RATE_HEADERS = ("x-ratelimit-tier", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests", "x-concurrent-limit", "x-concurrent-remaining")  # fmt: skip
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def key_for(gateway: Gateway, plan: str = "pro", allow: list[str] | None = None, **overrides) -> str:
    account = await gateway.ledger.create_account(f"acct-{len(await gateway.ledger.list_accounts())}", plan, overrides)
    await gateway.ledger.add_credits(account.id, 1000 * MICRO)
    _, secret = await gateway.ledger.create_key(account.id, "k", allow=allow)
    return secret


def assert_rate_headers(headers, tier: str = "pro", remaining: int | None = None) -> None:
    for name in RATE_HEADERS:
        assert name in headers, (name, dict(headers))
    assert headers["x-ratelimit-tier"] == tier
    assert ISO.match(headers["x-ratelimit-reset-requests"])
    if remaining is not None:
        assert headers["x-ratelimit-remaining-requests"] == str(remaining)


async def test_headers_on_every_answer(gateway: Gateway) -> None:
    secret = await key_for(gateway)
    async with gateway.client(api_key=secret) as client, gateway.anthropic(api_key=secret) as claude:
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO)
        assert_rate_headers(raw.headers, remaining=59)
        assert (raw.headers["x-ratelimit-limit-requests"], raw.headers["x-concurrent-limit"]) == ("60", "3")
        assert raw.headers["x-concurrent-remaining"] == "2"  # this request was in flight
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HELLO, stream=True)
        assert_rate_headers(raw.headers, remaining=58)
        _ = [c async for c in raw.parse()]
        raw = await claude.messages.with_raw_response.create(model="claude", max_tokens=20, messages=HELLO, stream=True)
        assert_rate_headers(raw.headers, remaining=57)
        _ = [e async for e in await raw.parse()]
        raw = await client.responses.with_raw_response.create(model="claude", input="Hello")
        assert_rate_headers(raw.headers, remaining=56)
        with pytest.raises(openai.NotFoundError) as caught:  # an error answer carries them too
            await client.chat.completions.create(model="gpt-99", messages=HELLO)
        assert_rate_headers(caught.value.response.headers, remaining=55)
        models = await client.models.with_raw_response.list()  # a look, not a request counted
        assert_rate_headers(models.headers, remaining=55)
    async with aiohttp.ClientSession() as session, session.get(gateway.server.make_url("/v1/models")) as resp:
        assert resp.status == 401 and "x-ratelimit-tier" not in resp.headers  # no key: nothing to tell


async def test_requests_per_minute(gateway: Gateway) -> None:
    secret = await key_for(gateway, rpm=3)
    async with gateway.client(api_key=secret) as client:
        for _ in range(3):
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    error = caught.value
    assert error.status_code == 429 and error.body["type"] == "rate_limit_error"
    assert "3 requests per minute" in error.message
    assert 1 <= int(error.response.headers["retry-after"]) <= 20
    assert_rate_headers(error.response.headers, remaining=0)
    async with gateway.anthropic(api_key=secret) as claude:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await claude.messages.create(model="claude", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert int(caught.value.response.headers["retry-after"]) >= 1


async def test_daily_quota(gateway: Gateway) -> None:
    secret = await key_for(gateway, daily=2)
    async with gateway.client(api_key=secret) as client:
        for _ in range(2):
            await client.responses.create(model="claude", input="x")
        with pytest.raises(openai.RateLimitError) as caught:
            await client.responses.create(model="claude", input="x")
    assert caught.value.body["type"] == "quota_exceeded" and "2 requests per day" in caught.value.message
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 86400


async def test_a_stream_holds_its_lease_until_its_last_byte(gateway: Gateway) -> None:
    secret = await key_for(gateway, concurrent=1)
    async with gateway.client(api_key=secret) as client:
        stream = await client.chat.completions.create(model="slow", messages=HELLO, stream=True)
        await stream.__anext__()
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert "1 at once" in caught.value.message
        assert caught.value.response.headers["x-concurrent-remaining"] == "0"
        _ = [c async for c in stream]
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)  # freed at the end


async def test_a_hang_up_frees_the_lease(gateway: Gateway) -> None:
    secret = await key_for(gateway, concurrent=1)
    async with gateway.client(api_key=secret) as client:
        stream = await client.chat.completions.create(model="slow", messages=HELLO, stream=True)
        await stream.__anext__()
        await stream.close()
        for _ in range(100):  # the gateway notices the hang-up at once (handler cancellation)
            try:
                await client.chat.completions.create(model="gpt-4o", messages=HELLO)
                break
            except openai.RateLimitError:
                await asyncio.sleep(0.02)
        else:
            raise AssertionError("the lease was not released after the hang-up")


async def test_models_outside_the_plan_or_the_key(gateway: Gateway) -> None:
    free = await key_for(gateway, plan="free")
    async with gateway.client(api_key=free) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.body["type"] == "permission_error"
    assert "'gpt-4o'" in caught.value.message and "Free plan" in caught.value.message
    limited = await key_for(gateway, allow=["claude", "tier:budget"])
    async with gateway.client(api_key=limited) as client, gateway.anthropic(api_key=limited) as claude:
        await client.chat.completions.create(model="claude", messages=HELLO)
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        assert "limited to claude, tier:budget" in caught.value.message
        with pytest.raises(anthropic.PermissionDeniedError):
            await claude.messages.count_tokens(model="gpt-4o", messages=HELLO)


@pytest.fixture
async def behind_proxy(aiohttp_server, upstream, anthropic_upstream, tmp_path, upstream_env) -> Gateway:
    extra = """
[ip_block]
max_failures = 3
window_s = 60
block_s = 60
trusted_proxies = ["127.0.0.1"]
allow = ["10.0.0.0/8"]
deny = ["192.0.2.66"]
"""
    path = write_config(tmp_path, str(upstream.make_url("/v1")), anthropic_url=str(anthropic_upstream.make_url("")),
                        extra=extra)  # fmt: skip
    return await start_gateway(aiohttp_server, load_config(path), upstream, plan="pro")


async def status(gateway: Gateway, ip: str, key: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": f"{ip}, 127.0.0.1"}
    async with aiohttp.ClientSession() as session:
        body = {"model": "gpt-4o", "messages": HELLO}
        async with session.post(gateway.server.make_url("/v1/chat/completions"), json=body, headers=headers) as resp:
            data = await resp.json()
            return resp.status, data.get("error", {}).get("type", "")


async def test_failed_auth_storm_blocks_one_ip_only(behind_proxy: Gateway) -> None:
    gw, bad = behind_proxy, "izzi-" + "x" * 43
    assert await status(gw, "203.0.113.7", bad) == (401, "authentication_error")
    assert await status(gw, "203.0.113.7", bad) == (401, "authentication_error")
    assert await status(gw, "203.0.113.7", bad) == (403, "ip_blocked")  # the third failure blocks
    assert await status(gw, "203.0.113.7", gw.key) == (403, "ip_blocked")  # even with a good key
    assert await status(gw, "198.51.100.9", gw.key) == (200, "")  # another IP is not affected
    for _ in range(5):
        assert await status(gw, "10.1.2.3", bad) == (401, "authentication_error")  # allow-listed
    assert await status(gw, "10.1.2.3", gw.key) == (200, "")
    assert await status(gw, "192.0.2.66", gw.key) == (403, "ip_blocked")  # deny-listed


async def test_a_blocked_ip_is_refused_before_any_key_lookup(behind_proxy: Gateway, monkeypatch) -> None:
    gw, bad = behind_proxy, "izzi-" + "z" * 43
    for _ in range(3):
        await status(gw, "203.0.113.8", bad)
    lookups = []
    original = gw.ledger.find_key

    async def counting(secret):
        lookups.append(secret)
        return await original(secret)

    monkeypatch.setattr(gw.ledger, "find_key", counting)
    assert await status(gw, "203.0.113.8", bad) == (403, "ip_blocked")
    assert await status(gw, "203.0.113.8", gw.key) == (403, "ip_blocked")
    assert lookups == []
    assert await status(gw, "198.51.100.10", gw.key) == (200, "")
    assert lookups == [gw.key]


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(gateway: Gateway) -> None:
    bad = "izzi-" + "y" * 43
    for _ in range(12):  # default: 10 failures block; the header is ignored, the peer counts
        await status(gateway, f"203.0.113.{_}", bad)
    assert await status(gateway, "198.51.100.1", gateway.key) == (403, "ip_blocked")
