"""/v1/models on the bundled catalog, through the openai SDK; and the mock upstream answering it."""

from __future__ import annotations

import dataclasses

import openai
import pytest
from openai.types import Model

from izzi_proxy.config import DEFAULT_CONFIG, load_config
from tests.conftest import Gateway, start_gateway


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
    assert sonnet["pricing"] == {"currency": "USD", "unit": "1M tokens", "input": 3.30, "output": 16.50}
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


async def test_models_need_a_key(bundled: Gateway) -> None:
    async with openai.AsyncOpenAI(base_url=bundled.url, api_key="nope", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
