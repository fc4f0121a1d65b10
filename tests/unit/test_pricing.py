"""Cost arithmetic against the bundled catalog's prices: exact integers of micro-credits."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

import pytest

from izzi_proxy.canonical import Usage
from izzi_proxy.config import DEFAULT_CONFIG, load_config
from izzi_proxy.pricing import AmountError, Prices, credits, percent_of, to_micro

CATALOG = load_config(DEFAULT_CONFIG, env={}).catalog


def by_hand(usd: dict[str, str], usage: Usage) -> int:
    """The cost in µcr, computed the slow way from the price list's USD per 1M tokens."""
    total = (
        Decimal(usd["input"]) * usage.input_tokens
        + Decimal(usd["output"]) * usage.output_tokens
        + Decimal(usd["cache_read"]) * usage.cache_read_tokens
        + Decimal(usd["cache_write"]) * usage.cache_write_tokens
    )
    return int((total / 10**6 * 10**6).to_integral_value(ROUND_CEILING))  # USD -> µcr: x 10^6 / 10^6 tokens


# model, its price list row (input, output; cache at 0.1x and 1.25x input), usage, expected µcr
CASES = [
    # claude-sonnet-4: $3.30 / $16.50; 1000 in, 500 out -> 3300 + 8250
    ("claude-sonnet-4", Usage(1000, 500), 11_550),
    # cache reads at $0.33, writes at $4.125: 10 in + 2000 read + 1000 written + 100 out
    ("claude-sonnet-4", Usage(10, 100, cache_read_tokens=2000, cache_write_tokens=1000), 33 + 1650 + 660 + 4125),
    # reasoning tokens are output tokens: 300 out of which 200 reasoning costs 300 at the output price
    ("gpt-5.1", Usage(1000, 300, reasoning_tokens=200), 700 + 1680),
    # one token of each rounds up once, to the micro-credit: 0.08 + 0.14 -> 0.22 -> 1
    ("qwen3-235b", Usage(1, 1), 1),
    # claude-opus-4.6: $5.50 in, $27.50 out, $0.55 cache read -> 679008 + 216975 + 27500
    ("claude-opus-4.6", Usage(123_456, 7_890, cache_read_tokens=50_000), 923_483),
    ("gemini-2.5-flash-lite", Usage(1_000_000, 1_000_000), 140_000 + 830_000),
]


@pytest.mark.parametrize(("model", "usage", "expected"), CASES)
def test_cost_against_the_price_list(model: str, usage: Usage, expected: int) -> None:
    entry = CATALOG.resolve(model)
    usd = {k: str(v) for k, v in entry.prices.usd().items()}
    assert entry.prices.cost(usage) == by_hand(usd, usage) == expected


def test_catalog_cache_prices_follow_the_ratios() -> None:
    prices = CATALOG.resolve("claude-sonnet-4").prices
    assert (prices.input, prices.output, prices.cache_read, prices.cache_write) == (3_300_000, 16_500_000, 330_000,
                                                                                   4_125_000)  # fmt: skip


def test_amounts() -> None:
    assert to_micro("10") == 10_000_000 and to_micro("0.000001") == 1 and to_micro(2) == 2_000_000
    assert credits(12_345_678) == "12.345678" and credits(-1) == "-0.000001" and credits(0) == "0.000000"
    for bad in ("0.0000001", "abc", "inf", "NaN"):
        with pytest.raises(AmountError):
            to_micro(bad)
    assert percent_of(10_000_000, "25") == 2_500_000 and percent_of(3, "50") == 1
    with pytest.raises(AmountError):
        percent_of(1, "101")


def test_output_tokens_an_amount_pays_for() -> None:
    prices = Prices(1_000_000, 2_000_000, 100_000, 1_250_000)  # $1 / $2
    assert prices.output_tokens_for(2) == 1 and prices.of(0, prices.output_tokens_for(2_000)) == 2_000
