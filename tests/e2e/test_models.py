"""/v1/models on the bundled catalog, through the openai SDK and (in Anthropic's shape) the
anthropic SDK; and the mock upstream answering every model."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import anthropic
import openai
import pytest
from anthropic.types import ModelInfo
from openai.types import Model

from izzi_proxy.config import DEFAULT_CONFIG, load_config
from izzi_proxy.keys import CONFIG
from tests.conftest import Gateway, start_gateway
from tests.e2e.shapes import assert_anthropic_error, assert_openai_error
from tests.e2e.test_failover import ask


@pytest.fixture
async def bundled(aiohttp_server, tmp_path) -> Gateway:
    config = load_config(DEFAULT_CONFIG, env={}).with_mock_upstreams()
    config = dataclasses.replace(
        config, storage=dataclasses.replace(config.storage, database_url=f"sqlite:///{tmp_path}/db.sqlite3")
    )
    return await start_gateway(aiohttp_server, config, None, plan="ultra")


async def test_list_models(bundled: Gateway) -> None:
    async with bundled.client() as client:
        models = [m async for m in client.models.list()]
    assert len(models) == 36
    for model in models:
        Model.model_validate(model.to_dict())
    by_id = {m.id: m.to_dict() for m in models}
    sonnet = by_id["claude-sonnet-4"]
    assert sonnet["tier"] == "premium" and sonnet["context_window"] == 200000
    assert sonnet["pricing"] == {
        "currency": "USD",
        "unit": "1M tokens",
        "input": 3.30,
        "output": 16.50,
        "cache_read": 0.33,  # models.toml's [pricing] ratios: 0.1 and 1.25 of the input price
        "cache_write": 4.125,
    }
    assert "claude-sonnet-4-20250514" in sonnet["aliases"]


@pytest.mark.parametrize(
    ("asked", "found"),
    [("claude-sonnet-4-20250514", "claude-sonnet-4"), ("auto", "auto"), ("gpt-5.1", "gpt-5.1"),
     ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5")],
)  # fmt: skip
async def test_retrieve_resolves_aliases(bundled: Gateway, asked: str, found: str) -> None:
    async with bundled.client() as client:
        assert (await client.models.retrieve(asked)).id == found


@pytest.mark.parametrize("model", ["claude-sonnet-4-20250514", "auto", "qwen3-235b", "gpt-5.4-direct"])
async def test_mock_answers_every_catalog_model(bundled: Gateway, model: str) -> None:
    async with bundled.client() as client:
        completion = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}])
        assert completion.choices[0].message.content == "Echo: Hello!"
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello!"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Echo: Hello!"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("dialect", ["chat", "messages", "responses", "gemini"])
async def test_every_catalog_model_from_every_client_format(bundled: Gateway, dialect: str, stream: bool) -> None:
    """The whole bundled catalog, ``auto`` and the Responses-only codex models included, on
    the mock upstream (which speaks chat and Responses, as the catalog's routes ask)."""
    ids = [entry.id for entry in bundled.app[CONFIG].catalog]
    room = asyncio.Semaphore(6)  # the plan's requests in flight

    async def one(model: str) -> str:
        async with room:
            return await ask(bundled, dialect, model, stream, "Hello!")

    answers = await asyncio.gather(*map(one, ids))
    assert dict(zip(ids, answers, strict=True)) == dict.fromkeys(ids, "Echo: Hello!")


async def test_models_need_a_key(bundled: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=bundled.url, api_key="nope", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


# -- Anthropic's shape, for clients that send anthropic-version ---------------------------------


def strict_model_info(model) -> None:
    ModelInfo.model_validate(model.to_dict())  # every field the SDK requires, of its type
    assert model.type == "model" and model.lifecycle == "active"


async def test_the_anthropic_sdk_lists_models_page_by_page(bundled: Gateway) -> None:
    async with bundled.anthropic() as claude:
        first = await claude.models.list(limit=5)
        assert [m.id for m in first.data] == [e.id for e in list(bundled.app[CONFIG].catalog)[:5]]
        assert first.has_more and first.first_id == first.data[0].id and first.last_id == first.data[-1].id
        every = [m async for m in claude.models.list(limit=7)]  # the SDK follows after_id to the end
        back = await claude.models.list(before_id=every[10].id, limit=3)
    assert [m.id for m in every] == [e.id for e in bundled.app[CONFIG].catalog] and len(every) == 36
    for model in every:
        strict_model_info(model)
    sonnet = next(m for m in every if m.id == "claude-sonnet-4")
    assert sonnet.display_name == "Claude Sonnet 4" and sonnet.max_input_tokens == 200000
    assert sonnet.to_dict()["pricing"]["input"] == 3.30
    assert [m.id for m in back.data] == [m.id for m in every[7:10]] and back.has_more


async def test_the_anthropic_sdk_retrieves_a_model_under_any_name(bundled: Gateway) -> None:
    async with bundled.anthropic() as claude:
        for asked, found in [
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
            ("claude-opus-4-8", "claude-opus-4.6"),
        ]:
            model = await claude.models.retrieve(asked)
            strict_model_info(model)
            assert model.id == found
        with pytest.raises(anthropic.NotFoundError) as caught:
            await claude.models.retrieve("gpt-99")
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "not_found"


@pytest.mark.parametrize(
    ("query", "param"),
    [("limit=0", "limit"), ("limit=abc", "limit"), ("limit=1001", "limit"), ("after_id=nope", "after_id")],
)
async def test_bad_pages_are_anthropic_400s(bundled: Gateway, query: str, param: str) -> None:
    headers = {"x-api-key": bundled.key, "anthropic-version": "2023-06-01"}
    url = bundled.server.make_url(f"/v1/models?{query}")
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        error = await assert_anthropic_error(resp, 400, "invalid_request_error")
    assert error["message"].startswith(param)


async def test_openai_shape_without_the_header(bundled: Gateway) -> None:
    url, headers = bundled.server.make_url("/v1/models"), {"x-api-key": bundled.key}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        body = await resp.json()
    assert body["object"] == "list" and len(body["data"]) == 36 and "has_more" not in body


async def test_bad_paging_is_refused_in_openais_shape_too(bundled: Gateway) -> None:
    url, headers = bundled.server.make_url("/v1/models?limit=0"), {"x-api-key": bundled.key}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        error = await assert_openai_error(resp, 400, "invalid_request_error")
    assert error["message"].startswith("limit")
