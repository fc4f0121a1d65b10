"""The dashboard's parts alone: signed sessions, server-drawn charts, usage turned into series."""

from __future__ import annotations

import hashlib

import pytest

from izzi_proxy.catalog import Catalog, ModelEntry, Route
from izzi_proxy.config import ConfigError
from izzi_proxy.dashboard import charts, usage
from izzi_proxy.dashboard.sessions import OPERATOR, USER, Sessions
from izzi_proxy.ledger import ApiKey, UsageSummary
from izzi_proxy.pricing import Prices

NOW = 1_800_000_000.0
ADMIN = hashlib.sha256(b"admin-token-" + b"x" * 20).digest()
KEY = ApiKey(7, 3, "acme", "pro", "laptop", "izzi-abcdef", NOW)


def sessions(admin: bytes | None = ADMIN, env: dict | None = None) -> Sessions:
    return Sessions.from_env(admin, 3600, env or {})


def test_a_session_reads_back_and_holds_who_not_the_key() -> None:
    s = sessions()
    cookie = s.issue(USER, NOW, KEY)
    read = s.read(cookie, NOW + 10)
    assert (read.role, read.key_id, read.account_id) == (USER, 7, 3)
    assert "izzi-" not in cookie
    assert s.read(cookie, NOW + 3600) is None  # expired


@pytest.mark.parametrize("mangle", [
    lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # the signature
    lambda c: ("f" if c[0] != "f" else "g") + c[1:],  # the body
    lambda c: c.split(".")[0],  # no signature
    lambda c: c + ".x",
    lambda c: "",
])  # fmt: skip
def test_a_changed_cookie_is_no_session(mangle) -> None:
    s = sessions()
    assert s.read(mangle(s.issue(OPERATOR, NOW)), NOW) is None


def test_another_secret_or_a_new_admin_token_ends_sessions() -> None:
    configured = {"IZZI_SESSION_SECRET": "s" * 40}
    a, b = sessions(env=configured), sessions(env={"IZZI_SESSION_SECRET": "t" * 40})
    cookie = a.issue(OPERATOR, NOW)
    assert a.read(cookie, NOW) is not None and b.read(cookie, NOW) is None
    # the same secret, the admin token changed: operator sessions end, user sessions stay
    rotated = sessions(hashlib.sha256(b"another-admin-token-123").digest(), env=configured)
    assert rotated.read(cookie, NOW) is None
    assert rotated.read(a.issue(USER, NOW, KEY), NOW) is not None
    # derived from the admin token, with no secret configured: another process derives the same
    assert sessions().read(sessions().issue(OPERATOR, NOW), NOW) is not None
    with pytest.raises(ConfigError, match="at least 32"):
        sessions(env={"IZZI_SESSION_SECRET": "short"})


def test_without_an_admin_token_there_is_no_operator() -> None:
    s = sessions(admin=None)
    assert not s.operator_enabled and not s.is_admin_token("anything-at-all-12345")
    assert s.read(s.issue(OPERATOR, NOW), NOW) is None


def test_the_csrf_token_is_bound_to_its_session() -> None:
    s = sessions()
    one, two = s.read(s.issue(USER, NOW, KEY), NOW), s.read(s.issue(USER, NOW, KEY), NOW)
    assert s.csrf_ok(one, s.csrf(one)) and not s.csrf_ok(two, s.csrf(one))
    assert not s.csrf_ok(one, None) and not s.csrf_ok(one, "")


def test_charts_escape_what_they_draw() -> None:
    evil = '<script>alert(1)</script>"'
    svg = charts.days_chart(["2027-01-01"], [charts.Series(evil, [2.0], "s0")], str, evil)
    svg += charts.bars_chart([(evil, 1.0)], str, evil)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_bars_stack_to_the_day_total() -> None:
    svg = charts.days_chart(["2027-01-01", "2027-01-02"], [charts.Series("a", [1.0, 0.0], "s0"),
                            charts.Series("b", [3.0, 2.0], "s1")], str, "x")  # fmt: skip
    assert svg.count("<rect") == 3  # a zero draws nothing
    assert charts._ticks(4.0)[-1] >= 4.0 and charts._ticks(0.0003)[-1] >= 0.0003


def row(group: str, day: str | None = None, cost: int = 0, **tokens: int) -> UsageSummary:
    fields = {"input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, **tokens}
    return UsageSummary(group, 1, 0, fields["input_tokens"], fields["output_tokens"], fields["cache_read_tokens"],
                        fields["cache_write_tokens"], 0, cost, 0, day)  # fmt: skip


def test_series_keep_the_largest_groups_and_sum_the_rest() -> None:
    days = ["2027-01-01", "2027-01-02"]
    rows = [row(f"m{i}", days[i % 2], cost=(i + 1) * 1_000_000) for i in range(9)]
    series = usage.series(rows, days, usage.METRICS["cost"])
    names = [s.name for s in series]
    assert names == ["m8", "m7", "m6", "m5", "m4", "m3", "other"]
    other = series[-1]
    assert other.css == "rest" and other.values == [1.0 + 3.0, 2.0]  # m0, m2 on day one; m1 on day two
    total = sum(sum(s.values) for s in series)
    assert total == sum(range(1, 10))
    # seven groups: all drawn, no "other" of one
    assert "other" not in [s.name for s in usage.series(rows[:7], days, usage.METRICS["cost"])]


def test_days_back_ends_today() -> None:
    since, days = usage.days_back(7, NOW)
    assert len(days) == 7 and since % 86400 == 0 and since <= NOW < since + 7 * 86400
    assert days[-1] == "2027-01-15"


def test_cache_savings_use_the_catalogs_prices() -> None:
    entry = ModelEntry("claude", "Claude", "standard", Prices.from_usd(3, 15, 0.3, 3.75), 200_000, (Route("a", "c"),))
    catalog = Catalog([entry])
    (use,) = usage.cache_use([row("claude", input_tokens=100, cache_read_tokens=1_000_000, cache_write_tokens=1000)],
                             catalog)  # fmt: skip
    # a million tokens read at 0.30 instead of 3.00 saves 2.70; 1000 written at 0.75 over the input price costs 0.00075
    assert use.saved == 2_700_000 - 750
    assert use.hit_rate == pytest.approx(1_000_000 / 1_001_100)
    (gone,) = usage.cache_use([row("retired", cache_read_tokens=5)], catalog)
    assert gone.saved == 0
