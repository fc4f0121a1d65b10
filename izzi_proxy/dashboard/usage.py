"""Usage summaries turned into what the dashboard draws: series per day, totals per group,
and what prompt caching saved."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from izzi_proxy.catalog import Catalog
from izzi_proxy.dashboard.charts import Series, series_class
from izzi_proxy.ledger import UsageSummary
from izzi_proxy.pricing import MICRO, PER

DAY_S = 86400
TOP = 6  # groups drawn apiece in a chart; the rest is summed as "other"
RANGES = (7, 30, 90)  # days a page may show


@dataclass(frozen=True, slots=True)
class Metric:
    label: str
    of: Callable[[UsageSummary], float]
    fmt: Callable[[float], str]


def _tokens(n: float) -> str:
    n = float(n)
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}" if n == int(n) else f"{n:.2f}"


def _cost(credits: float) -> str:
    if credits >= 1 or credits == 0:
        return f"${credits:,.2f}"
    return "$" + f"{credits:.6f}".rstrip("0").rstrip(".")


METRICS = {
    "cost": Metric("Cost (credits)", lambda r: r.cost / MICRO, _cost),
    "requests": Metric("Requests", lambda r: r.requests, _tokens),
    "tokens": Metric("Tokens (input + output)", lambda r: r.input_tokens + r.output_tokens, _tokens),
}


def days_back(days: int, now: float | None = None) -> tuple[float, list[str]]:
    """The start (UTC midnight) of the last ``days`` days, today included, and their dates."""
    now = time.time() if now is None else now
    today = now - now % DAY_S
    starts = [today - (days - 1 - i) * DAY_S for i in range(days)]
    return starts[0], [time.strftime("%Y-%m-%d", time.gmtime(start)) for start in starts]


def series(rows: Sequence[UsageSummary], days: Sequence[str], metric: Metric) -> list[Series]:
    """Rows summed per day and group (``daily=True``) as one series per group: the TOP
    largest over the range, the rest together as "other"."""
    total: dict[str, float] = {}
    for row in rows:
        total[row.group] = total.get(row.group, 0.0) + metric.of(row)
    ranked = [g for g, v in sorted(total.items(), key=lambda kv: -kv[1]) if v > 0]
    named = ranked if len(ranked) <= TOP + 1 else ranked[:TOP]  # no "other" of one group
    index = {day: i for i, day in enumerate(days)}
    values = {g: [0.0] * len(days) for g in [*named, "other"]}
    for row in rows:
        if row.day in index:
            values[row.group if row.group in named else "other"][index[row.day]] += metric.of(row)
    return [Series(g, v, series_class(i, g)) for i, (g, v) in enumerate(values.items()) if any(v)]


def ranked(rows: Sequence[UsageSummary], metric: Metric, limit: int = 12) -> list[tuple[str, float]]:
    """Groups by their total, largest first; past ``limit``, the rest as "other"."""
    pairs = sorted(((r.group, float(metric.of(r))) for r in rows), key=lambda p: -p[1])
    pairs = [p for p in pairs if p[1] > 0]
    if len(pairs) > limit:
        pairs = [*pairs[: limit - 1], ("other", sum(v for _, v in pairs[limit - 1 :]))]
    return pairs


@dataclass(frozen=True, slots=True)
class CacheUse:
    model: str
    input_tokens: int  # uncached
    cache_read_tokens: int
    cache_write_tokens: int
    saved: int  # µcr: what the cached reads would have cost as input, less what caching cost

    @property
    def hit_rate(self) -> float:
        """Of the prompt tokens, the share read from the cache."""
        prompt = self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
        return self.cache_read_tokens / prompt if prompt else 0.0


def cache_use(by_model: Sequence[UsageSummary], catalog: Catalog) -> list[CacheUse]:
    """Per model (rows grouped by ``model``), with the catalog's prices: reads at the input
    price minus the cache-read price, less writes' premium over the input price."""
    out = []
    for row in by_model:
        entry = catalog.resolve(row.group)
        saved = 0
        if entry is not None:
            p = entry.prices
            saved = (row.cache_read_tokens * (p.input - p.cache_read)
                     - row.cache_write_tokens * max(0, p.cache_write - p.input)) // PER  # fmt: skip
        out.append(CacheUse(row.group, row.input_tokens, row.cache_read_tokens, row.cache_write_tokens, saved))
    return sorted(out, key=lambda c: -c.cache_read_tokens)


def cache_total(uses: Sequence[CacheUse]) -> CacheUse:
    return CacheUse("all", sum(u.input_tokens for u in uses), sum(u.cache_read_tokens for u in uses),
                    sum(u.cache_write_tokens for u in uses), sum(u.saved for u in uses))  # fmt: skip


def total(rows: Sequence[UsageSummary], group: str = "all") -> UsageSummary:
    """The rows summed as one."""
    sums = [sum(getattr(r, name) for r in rows) for name in _SUMMED]
    return UsageSummary(group, *sums)


def per_group(daily: Sequence[UsageSummary]) -> list[UsageSummary]:
    """Rows summed per day and group, summed per group over the days: one scan of the
    records serves both the chart over time and the totals."""
    groups: dict[str, list[UsageSummary]] = {}
    for row in daily:
        groups.setdefault(row.group, []).append(row)
    return [total(rows, group) for group, rows in sorted(groups.items())]


_SUMMED = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
           "reasoning_tokens", "cost", "unbilled")  # fmt: skip
