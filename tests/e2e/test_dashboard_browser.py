"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright (its
Python package, with that executable: no browser is downloaded). Screenshots of each step
are saved under ``artifacts/dashboard/`` (``IZZI_ARTIFACTS`` moves it)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from izzi_proxy.pricing import MICRO
from tests.conftest import Gateway
from tests.e2e.test_dashboard import HI, TOKEN, gateway  # noqa: F401  (the fixture)

CHROMIUM = os.environ.get("IZZI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("IZZI_ARTIFACTS") or Path(__file__).parents[2] / "artifacts") / "dashboard"
# as the machine's closed network wants it: no background calls to Google's hosts
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: scripts/browser installs Debian's package"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser, gateway: Gateway) -> AsyncIterator[Page]:  # noqa: F811
    context = await browser.new_context(
        base_url=str(gateway.server.make_url("/")), viewport={"width": 1280, "height": 900}
    )
    page = await context.new_page()
    problems: list[str] = []  # a CSP violation or a script error shows here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())  # the confirmations dashboard.js asks
    yield page
    await context.close()
    assert not problems, problems


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, secret: str) -> None:
    await page.goto("/dashboard")
    await expect(page).to_have_url(re.compile(r".*/dashboard/login$"))
    await page.fill("input[name=secret]", secret)
    await page.click("button[type=submit]")


async def test_the_operator_creates_an_account_and_a_key_tops_up_and_revokes(page: Page, gateway: Gateway) -> None:  # noqa: F811
    await sign_in(page, TOKEN)
    await expect(page.locator("h1")).to_have_text("Overview")
    await shot(page, "operator-1-overview")

    await page.click("nav >> text=Accounts")
    await page.fill("input[name=name]", "acme")
    await page.select_option("select[name=plan]", "pro")
    await page.click("text=Create account")
    await expect(page.locator("h1")).to_contain_text("acme")

    await page.fill("input[name=key_name]", "ci laptop")
    await page.fill("input[name=expires_days]", "90")
    await page.click("text=Create key")
    secret = (await page.locator("#new-secret").inner_text()).strip()
    assert secret.startswith("izzi-") and await gateway.ledger.find_key(secret) is not None
    await expect(page.locator("#new-key")).to_contain_text("shown this once")
    await shot(page, "operator-2-key-created")

    await page.click("nav >> text=Accounts")
    row = page.locator("#accounts tr", has_text="acme")
    await expect(row).to_contain_text("pro")
    await expect(row.locator("td").nth(5)).to_have_text("1")  # one live key
    await shot(page, "operator-3-accounts")

    await row.locator("a").click()
    await page.fill("input[name=amount]", "25")
    await page.fill("input[name=bonus_pct]", "10")
    await page.fill("input[name=note]", "bank transfer 7")
    drawn = page.locator("input[name=idempotency_key]")
    first = await drawn.get_attribute("value")
    await page.click("text=Add credits")
    await expect(page.locator("#balance")).to_have_text("27.500000")
    await expect(page.locator("#credits")).to_contain_text("bank transfer 7")
    # the same form sent again (a resend, a second click before the page changed): drawn
    # anew, the page's form has a new idempotency key; the first one credits nothing more
    await page.go_back()
    await page.fill("input[name=amount]", "25")
    await page.fill("input[name=bonus_pct]", "10")
    await drawn.evaluate("(input, key) => { input.value = key; }", first)
    async with page.expect_response(lambda r: r.request.method == "POST" and "/credits" in r.url) as sent:
        await page.click("text=Add credits")
    assert (await sent.value).status == 303
    await expect(page.locator("#balance")).to_have_text("27.500000")
    account = await gateway.ledger.get_account("acme")
    assert (await gateway.ledger.balance_of(account.id)).balance == 27_500_000
    assert len(await gateway.ledger.credit_entries(account.id)) == 1
    await shot(page, "operator-4-topped-up")

    await page.click("#keys >> text=Revoke")
    await expect(page.locator("#keys")).to_contain_text("revoked")
    assert await gateway.ledger.find_key(secret) is None
    await shot(page, "operator-5-revoked")


async def test_the_user_sees_the_spend_chart_and_the_request_log(page: Page, gateway: Gateway) -> None:  # noqa: F811
    ids = []
    async with gateway.client() as client:
        for _ in range(2):
            raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI)
            ids.append(raw.headers["x-request-id"])
        stream = await client.chat.completions.create(model="gpt-4o", messages=HI, stream=True)
        async for _ in stream:
            pass
    async with gateway.anthropic() as claude:
        system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
        raw = await claude.messages.with_raw_response.create(model="claude", max_tokens=20, system=system, messages=HI)
        ids.append(raw.headers["x-request-id"])
    records = [await gateway.record(i) for i in ids]

    await sign_in(page, gateway.key)
    await expect(page.locator("h1")).to_contain_text("test-account")
    bars = page.locator("#spend svg.chart rect")
    assert await bars.count() >= 2  # today's bar, one part per model, and the per-model bars
    titles = " ".join([await t.text_content() for t in await page.locator("#spend svg.chart title").all()])
    assert "gpt-4o" in titles and "claude" in titles
    log = page.locator("#requests tbody tr")
    assert await log.count() == 4
    for record in records:
        row = page.locator("#requests tbody tr", has_text=record.request_id)
        await expect(row).to_contain_text(f"{record.cost / MICRO:.6f}")
        await expect(row).to_contain_text(record.model)
    cached = page.locator("#requests tbody tr", has_text=records[-1].request_id)
    await expect(cached.locator("td").nth(6)).to_have_text(f"{records[-1].usage.cache_read_tokens:,}")
    spent = sum(r.cost for r in await gateway.records())
    await expect(page.locator("#spent")).to_have_text(f"{spent / MICRO:.6f}")
    await expect(page.locator("#setup")).to_contain_text("/configure.py | python3 -")
    await shot(page, "user-1-spend-and-requests")

    # "get your API key from the dashboard": a new key, shown once, then revoked
    await page.fill("#keys input[name=key_name]", "second laptop")
    await page.click("#keys >> text=Create key")
    secret = (await page.locator("#new-secret").inner_text()).strip()
    assert await gateway.ledger.find_key(secret) is not None
    await shot(page, "user-2-key-created")
    await page.locator("#keys tr", has_text="second laptop").locator("text=Revoke").click()
    await expect(page.locator("#keys tr", has_text="second laptop")).to_contain_text("revoked")
    assert await gateway.ledger.find_key(secret) is None
