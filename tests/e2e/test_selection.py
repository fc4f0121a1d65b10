"""``auto``: the cheapest model that can serve the request; and the context-window check."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from izzi_proxy.config import load_config
from tests.conftest import Gateway, start_gateway, write_config

CATALOG = """
[models."cheap"]
name = "Cheap"
tier = "budget"
input = 0.1
output = 0.2
context = 1000
routes = ["fake:upstream-cheap"]
tools = false

[models."mid"]
name = "Mid"
tier = "budget"
input = 0.5
output = 1.0
context = 100000
routes = ["fake:upstream-mid"]
vision = true

[models."dear"]
name = "Dear"
tier = "premium"
input = 3.0
output = 6.0
context = 200000
routes = ["fake:upstream-dear"]
vision = true
reasoning = true

[models."auto"]
name = "Auto Select"
tier = "standard"
input = 0.7
output = 5.6
select = { rule = "cheapest", models = ["dear", "mid", "cheap"] }
"""
IMAGE = (
    "data:image/png;base64,"
    + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture
async def gw(aiohttp_server, upstream, tmp_path: Path, upstream_env: None) -> Gateway:
    path = write_config(tmp_path, str(upstream.make_url("/v1")), models={"gpt-4o": ["fake:upstream-gpt-4o"]})
    (tmp_path / "models.toml").write_text((tmp_path / "models.toml").read_text() + CATALOG)
    return await start_gateway(aiohttp_server, load_config(path), upstream, plan="unlimited")


async def served(gw: Gateway, **kwargs) -> str:
    async with gw.client() as client:
        raw = await client.chat.completions.with_raw_response.create(model="auto", **kwargs)
    completion = raw.parse()
    assert completion.model == "auto"  # the body names what the client asked for
    model = raw.headers["x-izzi-model"]
    assert gw.received[-1].body["model"] == f"upstream-{model}"
    record = (await gw.records(limit=1))[0]
    assert (record.model, record.requested_model) == (model, "auto")
    return model


async def test_auto_takes_the_cheapest_model_that_can_serve_the_request(gw: Gateway) -> None:
    hi = [{"role": "user", "content": "hi"}]
    assert await served(gw, messages=hi) == "cheap"
    assert await served(gw, messages=hi, tools=WEATHER) == "mid"  # cheap calls no tools
    image = [{"role": "user", "content": [{"type": "text", "text": "what is it"},
                                          {"type": "image_url", "image_url": {"url": IMAGE}}]}]  # fmt: skip
    assert await served(gw, messages=image) == "mid"  # cheap reads no images
    assert await served(gw, messages=hi, reasoning_effort="high") == "dear"  # only dear thinks
    long = [{"role": "user", "content": "word " * 2000}]  # ~2,500 tokens: past cheap's window
    assert await served(gw, messages=long) == "mid"


async def test_auto_is_billed_at_the_served_models_prices(gw: Gateway) -> None:
    assert await served(gw, messages=[{"role": "user", "content": "hi"}]) == "cheap"
    record = (await gw.records(limit=1))[0]
    usage = record.usage
    assert usage is not None
    # 0.1 / 0.2 credits per 1M tokens, in micro-credits: a tiny charge, not auto's 0.7 / 5.6
    assert record.cost == -(-(usage.input_tokens * 100_000 + usage.output_tokens * 200_000) // 1_000_000)


async def test_auto_with_nothing_that_fits_says_why(gw: Gateway) -> None:
    huge = [{"role": "user", "content": "word " * 200_000}]  # ~250k tokens: no window holds it
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="auto", messages=huge)
    assert "No model can serve this request for 'auto'" in caught.value.message
    assert "too short a context" in caught.value.message


async def test_an_input_past_the_window_is_refused_before_any_upstream_call(gw: Gateway) -> None:
    before = len(gw.received)
    async with gw.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "word " * 2000}])
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "messages"
    assert "maximum context length is 1000 tokens" in caught.value.message
    assert len(gw.received) == before
    # JSON syntax alone does not count: a body the hold's estimate puts past the window, but
    # whose text fits, goes on
    small = [{"role": "user", "content": "a"} for _ in range(300)]  # ~4,500 bytes, ~300 tokens of text
    async with gw.client() as client:
        answer = await client.chat.completions.create(model="cheap", messages=small)
    assert answer.choices[0].message.content == "Echo: a"
