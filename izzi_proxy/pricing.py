"""Money: credits as integers of micro-credits, and what a request costs.

1 credit = 1 USD = 1,000,000 micro-credits (µcr). Every amount the gateway keeps, adds or
compares is an integer of µcr; no float ever touches a balance. A catalog price of USD per
1M tokens is, read exactly as a decimal, µcr per token times 10^6, so a request's cost is

    ceil((input * p_in + output * p_out + cache_read * p_read + cache_write * p_write) / 10^6)

with each ``p`` in µcr per 1M tokens: exact integer arithmetic, rounded up once per request
(at most 1 µcr). Reasoning tokens are output tokens (``Usage.output_tokens`` includes them).
Amounts leave the gateway as decimal strings of credits (``"12.345678"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from izzi_proxy.canonical import Usage

MICRO = 1_000_000  # µcr per credit
PER = 1_000_000  # prices are per this many tokens


class AmountError(ValueError):
    """An amount that is not a plain decimal number of credits with at most six decimals."""


def to_micro(value: str | int | float | Decimal) -> int:
    """An amount of credits (``"10"``, ``"0.5"``, ``12.25``) as exact µcr."""
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise AmountError(f"{value!r} is not a number of credits") from None
    if not amount.is_finite():
        raise AmountError(f"{value!r} is not a number of credits")
    micro = amount * MICRO
    if micro != micro.to_integral_value():
        raise AmountError(f"{value!r} has more than six decimals (1 micro-credit is the smallest amount)")
    return int(micro)


def percent_of(micro: int, pct: str | int) -> int:
    """``pct`` percent (0 to 100, up to six decimals) of ``micro`` µcr, rounded down."""
    share = to_micro(pct)
    if not 0 <= share <= 100 * MICRO:
        raise AmountError(f"a percentage is between 0 and 100, got {pct!r}")
    return micro * share // (100 * MICRO)


def credits(micro: int) -> str:
    """µcr as a decimal string of credits, always with six decimals: ``"12.345678"``."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"


@dataclass(frozen=True, slots=True)
class Prices:
    """A model's prices, in µcr per 1M tokens (numerically: USD per 1M tokens * 10^6)."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    @classmethod
    def from_usd(cls, input: float, output: float, cache_read: float, cache_write: float) -> Prices:
        return cls(*(to_micro(price) for price in (input, output, cache_read, cache_write)))

    def cost(self, usage: Usage) -> int:
        """What that usage costs, in µcr, rounded up."""
        scaled = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        )
        return -(-scaled // PER)

    def of(self, input_tokens: int, output_tokens: int) -> int:
        """What that many uncached input and output tokens cost, in µcr, rounded up."""
        return -(-(input_tokens * self.input + output_tokens * self.output) // PER)

    def output_tokens_for(self, micro: int) -> int:
        """How many output tokens that many µcr pay for."""
        return micro * PER // self.output if self.output else 10**12

    def usd(self) -> dict[str, float]:
        """The prices as USD per 1M tokens (for listings)."""
        return {name: getattr(self, name) / MICRO for name in ("input", "output", "cache_read", "cache_write")}
