"""Credits end to end, through the official SDKs: holds, charges, the seed's 402 and 429,
the cost on every answer, streams metered against their hold, and clients that leave.

The test models cost $1 per 1M input tokens and $2 per 1M output tokens: 1 µcr per input
token and 2 per output token (cache reads 0.1x, writes 1.25x the input price)."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import httpx
import openai
import pytest

from izzi_proxy.canonical import Usage
from izzi_proxy.ledger import UsageRecord
from izzi_proxy.pricing import MICRO, Prices, credits
from tests.conftest import Gateway

PRICES = Prices(1_000_000, 2_000_000, 100_000, 1_250_000)
HI = [{"role": "user", "content": "Hello there"}]


async def account(gateway: Gateway, micro: int, plan: str = "unlimited", **overrides) -> str:
    """A new account holding ``micro`` µcr, and a key for it."""
    ledger = gateway.ledger
    created = await ledger.create_account(f"acct-{len(await ledger.list_accounts())}", plan, overrides)
    if micro:
        await ledger.add_credits(created.id, micro)
    _, secret = await ledger.create_key(created.id, "k")
    return secret


async def books(gateway: Gateway, account_id: int) -> None:
    """The ledger sums to the micro-credit: top-ups - charges = balance, nothing held."""
    balance = await gateway.ledger.balance_of(account_id)
    topped = sum(e.amount for e in await gateway.ledger.credit_entries(account_id))
    charged = sum(r.cost for r in await gateway.ledger.usage_records(limit=10_000, account_id=account_id))
    assert (balance.held, balance.holds) == (0, 0)
    assert topped - charged == balance.balance >= 0


def charged_right(record: UsageRecord, source: str = "reported") -> None:
    assert record.usage_source == source, record
    assert record.usage is not None and record.cost == PRICES.cost(record.usage) > 0
    assert record.held is not None and record.held >= record.cost and record.unbilled == 0


@pytest.mark.parametrize("model", ["gpt-4o", "claude"])  # passthrough, translated
async def test_a_plain_answer_is_charged_its_usage(gateway: Gateway, client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=HI, max_tokens=100)
    answer = raw.parse()
    record = await gateway.record(raw.headers["x-request-id"])
    charged_right(record)
    assert record.usage.output_tokens == answer.usage.completion_tokens
    # the hold: the input estimate (the body's size / 4, generous) plus max_tokens=100 at $2,
    # not the default 4096
    assert record.usage.input_tokens <= record.held - 2 * 100 < 100
    balance = await gateway.ledger.balance_of(record.account_id)
    assert raw.headers["x-izzi-cost"] == credits(record.cost)
    assert raw.headers["x-izzi-balance"] == credits(balance.balance) == credits(1000 * MICRO - record.cost)
    await books(gateway, record.account_id)


async def test_cache_reads_and_writes_are_charged_at_their_prices(
    gateway: Gateway, claude: anthropic.AsyncAnthropic
) -> None:
    raw = await claude.messages.with_raw_response.create(
        model="claude", max_tokens=100, messages=HI,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    )  # fmt: skip
    usage = (await raw.parse()).usage
    assert usage.cache_read_input_tokens and usage.cache_creation_input_tokens
    record = await gateway.record(raw.headers["x-request-id"])
    charged_right(record)
    expected = Usage(usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens,
                     usage.cache_creation_input_tokens)  # fmt: skip
    assert record.cost == PRICES.cost(expected)
    assert raw.headers["x-izzi-cost"] == credits(record.cost)


async def _stream_cost(gateway: Gateway, kind: str, model: str) -> tuple[str, float]:
    """Stream with the SDK of that format; the request id and the cost in the final usage."""
    if kind == "chat":
        async with gateway.client() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=HI, stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in raw.parse()]
        return raw.headers["x-request-id"], chunks[-1].usage.model_extra["cost"]
    if kind == "messages":
        async with gateway.anthropic() as claude:
            raw = await claude.messages.with_raw_response.create(model=model, max_tokens=100, messages=HI, stream=True)
            events = [event async for event in await raw.parse()]
        (delta,) = [e for e in events if e.type == "message_delta"]
        return raw.headers["x-request-id"], delta.usage.model_extra["cost"]
    async with gateway.client() as client:
        raw = await client.responses.with_raw_response.create(model=model, input="Hello there", stream=True)
        events = [event async for event in raw.parse()]
    assert events[-1].type == "response.completed"
    return raw.headers["x-request-id"], events[-1].response.usage.model_extra["cost"]


@pytest.mark.parametrize(
    ("kind", "model"),
    [("chat", "gpt-4o"), ("chat", "claude"), ("messages", "claude"), ("messages", "gpt-4o"),
     ("responses", "gpt-4o"), ("responses", "claude")],
)  # fmt: skip
async def test_a_stream_says_its_cost_in_its_final_usage(gateway: Gateway, kind: str, model: str) -> None:
    request_id, cost = await _stream_cost(gateway, kind, model)
    record = await gateway.record(request_id)
    charged_right(record)
    assert cost == float(credits(record.cost))


async def test_not_enough_credits_is_the_seeds_402_in_both_sdks(gateway: Gateway) -> None:
    key = await account(gateway, 1_000)  # 0.001 credits: less than 4096 output tokens at $2 per 1M
    async with gateway.client(api_key=key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HI)
    assert caught.value.status_code == 402
    assert caught.value.body["type"] == "insufficient_balance"
    assert "lower max_tokens to at most 48" in caught.value.body["message"]
    async with gateway.anthropic(api_key=key) as claude:
        with pytest.raises(anthropic.APIStatusError) as refused:
            await claude.messages.create(model="claude", max_tokens=4096, messages=HI)
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "insufficient_balance"
    record = await gateway.record(refused.value.response.headers["x-request-id"])
    assert (record.status, record.cost, record.held) == (402, 0, None)
    # what it can afford goes through, and is charged
    async with gateway.client(api_key=key) as client:
        answer = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI, max_tokens=40)
    await books(gateway, (await gateway.record(answer.headers["x-request-id"])).account_id)


async def test_the_plans_credits_per_5_hours_are_a_429_with_retry_after(gateway: Gateway) -> None:
    key = await account(gateway, 10 * MICRO, credits_per_5h="0.005")  # 5000 µcr per 5 h
    async with gateway.client(api_key=key) as client:
        first = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI, max_tokens=2000)
        record = await gateway.record(first.headers["x-request-id"])
        estimate = record.held - 2 * 2000
        # a hold that just does not fit in what is left of the window
        over = (5000 - record.cost - estimate) // 2 + 1
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=over)
        assert caught.value.body["type"] == "quota_exceeded"
        retry = int(caught.value.response.headers["Retry-After"])
        assert 5 * 3600 <= retry <= 5 * 3600 + 301  # when the first charge leaves the window
        # one that fits is admitted
        await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=over - 2)
        # a hold larger than the whole window can never fit: the message says so
        with pytest.raises(openai.RateLimitError) as never:
            await client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5000)
    assert "more than the plan's 0.005000 credits per 5 hours" in never.value.body["message"]


async def test_a_monthly_budget_is_a_402_budget_exceeded(gateway: Gateway) -> None:
    key = await account(gateway, 10 * MICRO, monthly_budget="0.002")
    async with gateway.anthropic(api_key=key) as claude:
        await claude.messages.create(model="claude", max_tokens=500, messages=HI)
        with pytest.raises(anthropic.APIStatusError) as caught:
            await claude.messages.create(model="claude", max_tokens=990, messages=HI)
    assert caught.value.status_code == 402 and caught.value.body["error"]["type"] == "budget_exceeded"


LONG = " ".join(f"word{i}" for i in range(60))


async def test_a_stream_past_its_hold_extends_it(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": LONG}], max_tokens=1, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in raw.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"Echo: {LONG}"
    record = await gateway.record(raw.headers["x-request-id"])
    charged_right(record)
    assert record.held > PRICES.of(record.usage.input_tokens, 1)
    await books(gateway, record.account_id)


async def test_a_stream_the_balance_cannot_cover_ends_with_an_in_stream_402(gateway: Gateway) -> None:
    key = await account(gateway, 300)  # covers the prompt and a few output tokens, not 60 words
    async with gateway.client(api_key=key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": LONG}], max_tokens=1, stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            [chunk async for chunk in raw.parse()]
    assert "Not enough credits to continue" in caught.value.message
    record = await gateway.record(raw.headers["x-request-id"])
    assert (record.outcome, record.error_type) == ("error", "insufficient_balance")
    # charged the words relayed (with the upstream's input figure, if its usage came before the cut)
    assert record.usage_source in ("partial", "estimated") and record.usage.output_tokens < len(LONG) / 4
    assert 0 < record.cost <= 300 and record.unbilled == 0
    await books(gateway, record.account_id)


@pytest.mark.parametrize(("model", "source"), [("slow", "estimated"), ("claude-slow", "partial")])
async def test_a_client_that_hangs_up_is_charged_what_was_relayed(gateway: Gateway, model: str, source: str) -> None:
    """Not 0, and not the whole answer: the prompt and the words it had received."""
    body = {"model": model, "messages": [{"role": "user", "content": LONG}], "stream": True, "max_tokens": 500}
    async with aiohttp.ClientSession() as http:
        resp = await http.post(gateway.url + "/chat/completions", json=body, headers={"x-api-key": gateway.key})
        received = b""
        async with asyncio.timeout(10):
            async for line in resp.content:
                received += line
                if received.count(b"word") >= 40:
                    break
        request_id = resp.headers["x-request-id"]
        resp.close()
    record = await gateway.record(request_id)
    assert record.outcome == "client_closed"
    charged_right(record, source)
    full = len(f"Echo: {LONG}") / 4
    assert full * 0.5 < record.usage.output_tokens < full  # about the 40 words relayed
    await books(gateway, record.account_id)


async def test_an_upstream_that_refuses_is_not_charged(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="error-400", messages=HI)
    record = await gateway.record(caught.value.response.headers["x-request-id"])
    assert (record.cost, record.usage_source) == (0, None) and record.held
    assert caught.value.response.headers["x-izzi-cost"] == "0.000000"
    await books(gateway, record.account_id)


async def test_me(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    key = await account(gateway, 5 * MICRO, plan="pro", credits_per_5h="2.5", monthly_budget="4")
    async with gateway.client(api_key=key) as mine:
        raw = await mine.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI, max_tokens=10)
    record = await gateway.record(raw.headers["x-request-id"])
    async with httpx.AsyncClient() as http:  # curl-like: the owner's own tooling
        resp = await http.get(gateway.url + "/me", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200
    me = resp.json()
    left = 5 * MICRO - record.cost
    assert me["balance"] == credits(left) and me["available"] == credits(left) and me["held"] == "0.000000"
    assert me["plan"]["id"] == "pro" and me["plan"]["credits_per_5h"] == "2.500000" and me["plan"]["rpm"] == 60
    assert me["window"]["spent"] == credits(record.cost)
    assert me["window"]["remaining"] == credits(int(2.5 * MICRO) - record.cost)
    assert me["month"] == {"budget": "4.000000", "spent": credits(record.cost),
                           "remaining": credits(4 * MICRO - record.cost)}  # fmt: skip
    assert me["today"]["requests"] == 1 and me["today"]["cost"] == credits(record.cost)
    # the chat request spent one of the minute's 60 and one of the day's; nothing is in flight
    now = me["now"]
    assert (now["rpm_remaining"], now["requests_today"], now["daily_remaining"]) == (59, 1, me["plan"]["daily"] - 1)
    assert (now["in_flight"], now["concurrent_remaining"]) == (0, me["plan"]["concurrent"])
    assert key not in str(me)


@pytest.mark.parametrize("model", ["gpt-length", "claude-max-tokens"])
async def test_an_incomplete_response_is_charged_its_usage(gateway: Gateway, client: openai.AsyncOpenAI, model) -> None:
    raw = await client.responses.with_raw_response.create(model=model, input="Hello there", stream=True)
    events = [event async for event in raw.parse()]
    assert events[-1].type == "response.incomplete"
    record = await gateway.record(raw.headers["x-request-id"])
    charged_right(record)
    assert events[-1].response.usage.model_extra["cost"] == float(credits(record.cost))
    await books(gateway, record.account_id)
