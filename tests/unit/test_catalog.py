"""Model resolution: ids, aliases, dated vendor ids, families, and the OpenAI model shape."""

from __future__ import annotations

import pytest
from openai.types import Model

from izzi_proxy.config import DEFAULT_CONFIG, load_config


@pytest.fixture(scope="module")
def catalog():
    return load_config(DEFAULT_CONFIG, env={}).catalog


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("claude-sonnet-4", "claude-sonnet-4"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("claude-sonnet-4-5", "claude-sonnet-4.5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
        ("claude-opus-4-6", "claude-opus-4.6"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("auto", "auto"),
        ("grok-4-0709", "grok-4"),
        ("llama-3.3-70b", "llama-3.3-70b"),
        ("gpt-5.1", "gpt-5.1"),
        # families: the names clients send by default
        ("claude-opus-4-8", "claude-opus-4.6"),  # Claude Code with no --model
        ("claude-opus-5", "claude-opus-4.6"),
        ("claude-sonnet-4-x", "claude-sonnet-4.6"),
        ("claude-3-5-haiku-20241022", "claude-haiku-4.5"),  # the seed's older list
        ("claude-3-7-sonnet-latest", "claude-sonnet-4.6"),
    ],
)
def test_resolve(catalog, name: str, expected: str) -> None:
    entry = catalog.resolve(name)
    assert entry is not None and entry.id == expected


@pytest.mark.parametrize("name", ["gpt-99", "claude", "", "gpt-4o-20", "claude-fable-1"])
def test_unknown(catalog, name: str) -> None:
    assert catalog.resolve(name) is None


def test_the_seed_price_list(catalog) -> None:
    rows = {e.id: (e.tier, e.prices.usd()["input"], e.prices.usd()["output"], e.context_window) for e in catalog}
    assert rows["qwen3-235b"] == ("maintained", 0.08, 0.14, 128000)
    assert rows["openrouter-free"] == ("maintained", 0.08, 0.14, None)
    assert rows["gemini-2.5-flash-lite"] == ("budget", 0.14, 0.83, 1000000)
    assert rows["auto"] == ("standard", 0.70, 5.60, None)
    assert rows["gpt-5.1-codex"] == ("standard", 0.70, 5.60, 128000)
    assert rows["gpt-5.4-direct"] == ("premium", 2.75, 16.50, 272000)
    assert rows["claude-opus-4.6"] == ("premium", 5.50, 27.50, 200000)


def test_every_entry_is_an_openai_model(catalog) -> None:
    for entry in catalog:
        data = entry.to_openai(1700000000)
        Model.model_validate(data)
        assert data["pricing"]["input"] == entry.prices.input / 1_000_000
        assert entry.routes or entry.select, entry.id


def test_families_never_shadow_a_listed_model(catalog) -> None:
    for entry in catalog:
        assert catalog.resolve(entry.id) is entry
        for alias in entry.aliases:
            assert catalog.resolve(alias) is entry
    assert set(catalog.families.values()) <= {e.id for e in catalog}
