"""Top-ups end to end, on both ledger backends: a user starts one over the API, the money is
confirmed by the provider's notification (a fake bank-notification service signing as SePay
does, a fake Cryptomus signing as Cryptomus does) or recorded by the operator (Lolzteam),
and the credits land exactly once, bonus included, however the notifications come:
replayed, forged, tampered, out of order, duplicated, many at once. Every payment is
reconciled to the micro-credit against the ledger's credit entries.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zxingcpp
from aiohttp.test_utils import TestServer
from izzi_payment_vietqr import crc_ok, parse
from PIL import Image
from playwright.async_api import expect

from izzi_proxy.app import create_app
from izzi_proxy.config import load_config
from izzi_proxy.keys import LEDGER, PAYMENTS
from izzi_proxy.ledger import Ledger, Payment
from izzi_proxy.pricing import MICRO
from izzi_proxy.testing.bank import push, sepay_notification
from izzi_proxy.testing.cryptomus import CRYPTOMUS, fake_cryptomus_app, notify, signed_body, webhook_data
from tests.e2e.test_cli import cli
from tests.e2e.test_dashboard_browser import browser, shot, sign_in  # noqa: F401  (browser: the fixture)
from tests.unit.ledger.conftest import url  # noqa: F401  (the fixture: SQLite, and PostgreSQL in a fresh schema)

ADMIN = "admin-token-for-payments"
BANK_KEY = "sepay-key-for-tests"
MERCHANT = "c26b80a8-9549-4b66-bb53-774f12809249"
CRYPTOMUS_KEY = "cryptomus-payment-key-for-tests"
RATE = 25_000  # VND per credit
PAYMENTS_TOML = f"""
[payments]
bonus = [{{ from = 50, percent = 10 }}, {{ from = 200, percent = 25 }}]
min_credits = 1
max_credits = 5000

[payments.providers.bank]
kind = "vietqr"
bank_bin = "970436"
account_number = "0123499999"
account_name = "CONG TY IZZI"
bank_name = "Vietcombank"
vnd_per_credit = {RATE}
webhook_key = "env:IZZI_TEST_SEPAY_KEY"

[payments.providers.crypto]
kind = "cryptomus"
merchant = "{MERCHANT}"
api_key = "env:IZZI_TEST_CRYPTOMUS_KEY"
base_url = "CRYPTOMUS_URL"

[payments.providers.lolz]
kind = "lolzteam"
pay_to = "https://lolz.live/members/1/"
"""


class Shop:
    """The gateway with payments configured, an account with a key, and HTTP helpers."""

    def __init__(self, server: TestServer, key: str, account_id: int, cryptomus: TestServer, config: Path) -> None:
        self.server, self.key, self.account_id, self.cryptomus = server, key, account_id, cryptomus
        self.config = config
        self.http = aiohttp.ClientSession()

    @property
    def ledger(self) -> Ledger:
        return self.server.app[LEDGER]

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def call(self, method: str, path: str, *, admin: bool = False, **kw: Any) -> tuple[int, Any]:
        token = ADMIN if admin else self.key
        async with self.http.request(method, self.url(path), headers={"Authorization": f"Bearer {token}"}, **kw) as r:
            return r.status, await r.json()

    async def start(self, amount: str, provider: str = "bank") -> dict:
        status, body = await self.call("POST", "/v1/payments", json={"amount": amount, "provider": provider})
        assert status == 201, body
        return body

    async def bank(self, body: Any, key: str | None = BANK_KEY) -> aiohttp.ClientResponse:
        return await push(self.http, self.url("/payments/bank/webhook"), key, body)

    async def balance(self) -> int:
        return (await self.ledger.balance_of(self.account_id)).balance

    async def payment(self, pid: str) -> Payment:
        found = await self.ledger.get_payment(pid)
        assert found is not None
        return found

    async def reconciled(self) -> int:
        """Every payment's credited figure equals its credit entries, to the micro-credit, and
        every credit entry of a payment belongs to one that says it was credited; the total."""
        entries = [e for e in await self.ledger.credit_entries() if (e.idempotency_key or "").startswith("payment:")]
        by_payment: dict[str, int] = {}
        for e in entries:
            pid = e.idempotency_key.split(":")[1]
            by_payment[pid] = by_payment.get(pid, 0) + e.amount
        payments = {p.id: p for p in await self.ledger.list_payments(limit=1000)}
        for pid, total in by_payment.items():
            assert payments[pid].credited == total, (payments[pid], total)
            assert payments[pid].state in ("credited", "refunded")
        for p in payments.values():
            assert p.credited == by_payment.get(p.id, 0), p
        return sum(by_payment.values())


@pytest.fixture
async def shop(aiohttp_server, tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    monkeypatch.setenv("IZZI_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("IZZI_TEST_SEPAY_KEY", BANK_KEY)
    monkeypatch.setenv("IZZI_TEST_CRYPTOMUS_KEY", CRYPTOMUS_KEY)
    cryptomus = await aiohttp_server(fake_cryptomus_app(MERCHANT, CRYPTOMUS_KEY))
    (tmp_path / "models.toml").write_text(
        '[models."echo"]\nname = "Echo"\ntier = "maintained"\ninput = 1\noutput = 2\nroutes = ["mock:echo"]\n'
    )
    path = tmp_path / "izzi.toml"
    payments = PAYMENTS_TOML.replace("CRYPTOMUS_URL", str(cryptomus.make_url("")))
    path.write_text(f'[storage]\ndatabase_url = "{url}"\n[upstreams.mock]\nkind = "mock"\n' + payments)
    server = await aiohttp_server(create_app(load_config(path)))
    ledger = server.app[LEDGER]
    account = await ledger.create_account("payer")
    _, key = await ledger.create_key(account.id, "k")
    shop_ = Shop(server, key, account.id, cryptomus, path)
    yield shop_
    await shop_.http.close()


async def test_bank_transfer_credits_once_with_bonus(shop: Shop) -> None:
    quoted = await shop.call("GET", "/v1/payments/quote?amount=60")
    assert quoted[1]["bonus"] == "6.000000" and quoted[1]["providers"] == ["bank", "crypto", "lolz"]
    started = await shop.start("60")
    ref = started["id"]
    assert started["state"] == "created" and started["currency"] == "VND" and started["amount"] == str(60 * RATE)
    assert started["bonus"] == "6.000000" and ref in started["details"]["qr_payload"]
    assert started["details"]["transfer_content"] == ref
    before = await shop.balance()
    # the reference as banks pass it on: lower case, glued to the words around it
    note = sepay_notification(f"MBVCB.123.chuyen tien{ref.lower()}.CT tu 0123", 60 * RATE)
    resp = await shop.bank(note)
    assert resp.status == 200 and (await resp.json())["data"][0]["outcome"] == "applied"
    assert await shop.balance() - before == 66 * MICRO
    for _ in range(3):  # the service retries: nothing more
        assert (await (await shop.bank(note)).json())["data"][0]["outcome"] == "unchanged"
    assert await shop.balance() - before == 66 * MICRO
    paid = await shop.payment(ref)
    assert (paid.state, paid.paid, paid.bonus, paid.credited) == ("credited", 60 * MICRO, 6 * MICRO, 66 * MICRO)
    kinds = sorted(e.kind for e in await shop.ledger.credit_entries(shop.account_id) if ref in (e.note or ""))
    assert kinds == ["bonus", "topup"]  # the bonus is an entry of its own
    assert await shop.reconciled() == 66 * MICRO
    status, mine = await shop.call("GET", f"/v1/payments/{ref}")
    assert status == 200 and mine["state"] == "credited" and mine["credited"] == "66.000000"


async def test_concurrent_duplicates_credit_once(shop: Shop) -> None:
    started = await shop.start("250")
    note = sepay_notification(f"IZZI {started['id']}", 250 * RATE)
    before = await shop.balance()
    answers = await asyncio.gather(*(shop.bank(note) for _ in range(12)))
    outcomes = [(await r.json())["data"][0]["outcome"] for r in answers]
    assert all(r.status == 200 for r in answers)
    assert outcomes.count("applied") == 1 and outcomes.count("unchanged") == 11
    assert await shop.balance() - before == 250 * MICRO + 250 * MICRO // 4  # +25 %
    assert await shop.reconciled() == 312_500_000


async def test_forged_and_tampered_notifications_change_nothing(shop: Shop) -> None:
    started = await shop.start("10")
    note = sepay_notification(started["id"], 10 * RATE)
    before = await shop.balance()
    for key in ("wrong-key", None, BANK_KEY.upper()):
        resp = await shop.bank(note, key=key)
        assert resp.status == 401 and (await resp.json())["error"]["type"] == "authentication_error"
        assert BANK_KEY not in await resp.text()
    resp = await shop.bank(b'{"id": 1, "transferType": "in", "transferAmount": ', key=BANK_KEY)
    assert resp.status == 400 and "cannot be read" in (await resp.json())["error"]["message"]
    assert await shop.balance() == before and (await shop.payment(started["id"])).state == "created"
    rejected = [e for e in await shop.ledger.payment_events() if e.outcome == "rejected"]
    assert len(rejected) == 4 and all(BANK_KEY not in (e.detail or "") for e in rejected)


async def test_unmatched_money_is_kept_and_assigned(shop: Shop) -> None:
    before = await shop.balance()
    lost = sepay_notification("chuyen tien cho anh", 5 * RATE)  # no reference at all
    assert (await (await shop.bank(lost)).json())["data"][0]["outcome"] == "unmatched"
    assert (await (await shop.bank(lost)).json())["data"][0]["outcome"] == "unmatched"  # a repeat: the same one
    status, listed = await shop.call("GET", "/admin/payments?state=unmatched", admin=True)
    assert status == 200 and len(listed["data"]) == 1
    kept = listed["data"][0]
    assert kept["account_id"] is None and kept["paid"] == "5.000000" and "chuyen tien cho anh" in kept["detail"]
    # a second transfer against a payment already paid is money too
    started = await shop.start("5")
    await shop.bank(sepay_notification(started["id"], 5 * RATE))
    again = await shop.bank(sepay_notification(started["id"], 5 * RATE))
    assert (await again.json())["data"][0]["outcome"] == "unmatched"
    assert len((await shop.call("GET", "/admin/payments?state=unmatched", admin=True))[1]["data"]) == 2
    assert await shop.balance() - before == 5 * MICRO
    status, assigned = await shop.call("POST", f"/admin/payments/{kept['id']}/assign", admin=True,
                                       json={"account": "payer"})  # fmt: skip
    assert status == 200 and assigned["state"] == "credited" and assigned["credited"] == "5.000000"
    status, again = await shop.call("POST", f"/admin/payments/{kept['id']}/assign", admin=True,
                                    json={"account": "payer"})  # fmt: skip
    assert status == 400 and "only an unmatched one" in again["error"]["message"]
    assert await shop.balance() - before == 10 * MICRO
    status, shown = await shop.call("GET", f"/admin/payments/{kept['id']}", admin=True)
    assert status == 200 and [e["outcome"] for e in shown["events"]] == ["unmatched"]
    assert [e["amount"] for e in shown["credit_entries"]] == ["5.000000"]
    assert await shop.reconciled() == 10 * MICRO


async def test_lolzteam_transfer_recorded_by_the_operator(shop: Shop) -> None:
    started = await shop.start("12.5", provider="lolz")
    assert started["amount"] == "12.50" and started["details"]["comment"] == started["id"]
    before = await shop.balance()
    body = {"transaction_id": "lzt-998877", "amount": "12.5", "reference": started["id"].lower()}
    status, done = await shop.call("POST", "/admin/payments/lolz/transactions", admin=True, json=body)
    assert status == 201 and done["outcome"] == "applied" and done["state"] == "credited"
    status, done = await shop.call("POST", "/admin/payments/lolz/transactions", admin=True, json=body)
    assert done["outcome"] == "unchanged"
    assert await shop.balance() - before == 12_500_000
    resp = await shop.http.post(shop.url("/payments/lolz/webhook"), data=b"{}")
    assert resp.status == 400 and "recorded by the operator" in (await resp.json())["error"]["message"]
    status, _ = await shop.call("POST", "/admin/payments/lolz/transactions", json=body)  # a user's key
    assert status == 401


async def test_late_money_after_expiry_is_credited(shop: Shop) -> None:
    started = await shop.start("3")
    assert await shop.server.app[PAYMENTS].sweep(time.time() + 7200) == 1
    assert (await shop.payment(started["id"])).state == "expired"
    before = await shop.balance()
    await shop.bank(sepay_notification(started["id"], 3 * RATE))
    assert (await shop.payment(started["id"])).state == "credited"
    assert await shop.balance() - before == 3 * MICRO


async def test_a_payment_left_paid_is_credited_by_the_sweep(shop: Shop) -> None:
    """A process that stopped between marking a payment paid and crediting it."""
    started = await shop.start("7")
    ledger = shop.ledger
    await ledger.move_payment(started["id"], "paid", ("created",), time.time(), paid=7 * MICRO, paid_by="bank:1")
    before = await shop.balance()
    await shop.server.app[PAYMENTS].sweep()
    assert (await shop.payment(started["id"])).state == "credited"
    assert await shop.balance() - before == 7 * MICRO
    assert await shop.reconciled() == 7 * MICRO


async def test_bad_input_is_a_clear_4xx(shop: Shop) -> None:
    cases = [
        ({"amount": "abc", "provider": "bank"}, 400, "amount"),
        ({"amount": "0.5", "provider": "bank"}, 400, "1.000000 to 5000.000000"),
        ({"amount": "5001", "provider": "bank"}, 400, "5000"),
        ({"amount": True, "provider": "bank"}, 400, "amount"),
        ({"amount": "10"}, 400, "provider"),
        ({"amount": "10", "provider": "paypal"}, 404, "bank, crypto, lolz"),
    ]
    for body, status, words in cases:
        got, answer = await shop.call("POST", "/v1/payments", json=body)
        assert got == status and words in answer["error"]["message"], (body, answer)
    got, answer = await shop.call("POST", "/v1/payments", data=b"{not json")
    assert got == 400 and "not valid JSON" in answer["error"]["message"]
    got, answer = await shop.call("GET", "/v1/payments/IZNOTAREALONE")
    assert got == 404
    resp = await shop.http.post(shop.url("/payments/nope/webhook"), data=b"{}")
    assert resp.status == 404
    got, answer = await shop.call("GET", "/admin/payments?state=lost", admin=True)
    assert got == 400 and "created" in answer["error"]["message"]
    assert await shop.ledger.list_payments() == []


async def test_a_users_payments_are_their_own(shop: Shop) -> None:
    started = await shop.start("2")
    other = await shop.ledger.create_account("other")
    _, other_key = await shop.ledger.create_key(other.id, "k")
    async with shop.http.get(shop.url(f"/v1/payments/{started['id']}"),
                             headers={"Authorization": f"Bearer {other_key}"}) as resp:  # fmt: skip
        assert resp.status == 404
    async with shop.http.get(shop.url("/v1/payments"), headers={"Authorization": f"Bearer {other_key}"}) as resp:
        assert (await resp.json())["data"] == []
    assert [p["id"] for p in (await shop.call("GET", "/v1/payments"))[1]["data"]] == [started["id"]]


async def test_cryptomus_invoice_paid_and_paid_over(shop: Shop) -> None:
    started = await shop.start("20", provider="crypto")
    invoices = shop.cryptomus.app[CRYPTOMUS].invoices
    invoice = invoices[started["external_id"]]
    assert (invoice.order_id, invoice.amount, invoice.currency) == (started["id"], "20.00", "USD")
    assert invoice.url_callback == shop.url("/payments/crypto/webhook")
    assert started["pay_url"].endswith(invoice.uuid) and started["expires_at"] > time.time()
    before = await shop.balance()
    assert await notify(shop.cryptomus, invoice.uuid, "check") == 200
    assert (await shop.payment(started["id"])).state == "pending"
    assert await notify(shop.cryptomus, invoice.uuid, "paid") == 200
    assert await shop.balance() - before == 20 * MICRO
    # resent, and late notifications of earlier states: nothing moves back, nothing more is credited
    for status in ("paid", "process", "check", "confirm_check"):
        assert await notify(shop.cryptomus, invoice.uuid, status) == 200
    assert (await shop.payment(started["id"])).state == "credited"
    assert await shop.balance() - before == 20 * MICRO
    over = await shop.start("50", provider="crypto")
    assert await notify(shop.cryptomus, over["external_id"], "paid_over", "55.00") == 200
    got = await shop.payment(over["id"])
    assert (got.paid, got.bonus, got.credited) == (55 * MICRO, 5_500_000, 60_500_000)  # what was paid, +10 %
    assert await shop.balance() - before == 80_500_000
    assert await shop.reconciled() == 80_500_000


async def test_cryptomus_failures_credit_nothing(shop: Shop) -> None:
    before = await shop.balance()
    for status, state in (("wrong_amount", "failed"), ("cancel", "failed"), ("fail", "failed")):
        started = await shop.start("10", provider="crypto")
        assert await notify(shop.cryptomus, started["external_id"], status, "4.00") == 200
        got = await shop.payment(started["id"])
        assert got.state == state and status in got.detail and got.credited == 0
    assert await shop.balance() == before
    assert await shop.reconciled() == 0


async def test_cryptomus_refund_after_credit_is_recorded(shop: Shop) -> None:
    started = await shop.start("10", provider="crypto")
    await notify(shop.cryptomus, started["external_id"], "paid")
    before = await shop.balance()
    await notify(shop.cryptomus, started["external_id"], "refund_process")
    assert (await shop.payment(started["id"])).state == "credited"
    await notify(shop.cryptomus, started["external_id"], "refund_paid")
    got = await shop.payment(started["id"])
    assert (got.state, got.credited) == ("refunded", 10 * MICRO)  # for the operator to see; nothing taken back
    assert await shop.balance() == before
    status, shown = await shop.call("GET", f"/admin/payments/{started['id']}", admin=True)
    assert status == 200 and [e["status"] for e in shown["events"]] == ["paid", "pending", "refunded"]
    assert await shop.reconciled() == 10 * MICRO


async def test_cryptomus_forged_tampered_and_replayed(shop: Shop) -> None:
    started = await shop.start("30", provider="crypto")
    invoice = shop.cryptomus.app[CRYPTOMUS].invoices[started["external_id"]]
    webhook = shop.url("/payments/crypto/webhook")
    before = await shop.balance()
    forged = signed_body("not-the-key", webhook_data(invoice, "paid"))
    tampered = signed_body(CRYPTOMUS_KEY, webhook_data(invoice, "paid", "3.00")).replace(b'"3.00"', b'"300.00"')
    unsigned = signed_body(CRYPTOMUS_KEY, webhook_data(invoice, "paid")).replace(b'"sign"', b'"sig"')
    for body in (forged, tampered, unsigned):
        async with shop.http.post(webhook, data=body, headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 401, await resp.text()
            assert CRYPTOMUS_KEY not in await resp.text()
    assert await shop.balance() == before and (await shop.payment(started["id"])).state == "created"
    genuine = signed_body(CRYPTOMUS_KEY, webhook_data(invoice, "paid"))
    answers = await asyncio.gather(*(shop.http.post(webhook, data=genuine) for _ in range(8)))  # a replay, at once
    assert [r.status for r in answers] == [200] * 8
    for r in answers:
        r.release()
    assert await shop.balance() - before == 30 * MICRO
    assert await shop.reconciled() == 30 * MICRO


async def test_cryptomus_down_is_a_clear_502_and_kept(shop: Shop) -> None:
    shop.cryptomus.app[CRYPTOMUS].fail_status = 500
    status, body = await shop.call("POST", "/v1/payments", json={"amount": "10", "provider": "crypto"})
    assert status == 502 and "could not make the invoice" in body["error"]["message"]
    assert CRYPTOMUS_KEY not in str(body)
    [kept] = await shop.ledger.list_payments(state="failed")
    assert kept.provider == "crypto" and "500" in kept.detail


async def test_the_operators_commands(shop: Shop) -> None:
    def run(*args: str):
        done = cli("payments", *args, "--config", str(shop.config))
        assert done.returncode == 0, done.stderr
        return done

    before = await shop.balance()
    await shop.bank(sepay_notification("no reference here", 4 * RATE))
    listed = run("list", "--state", "unmatched").stdout.splitlines()
    assert len(listed) == 1 and "(unmatched)" in listed[0] and "paid 4.000000" in listed[0]
    kept = listed[0].split("\t")[0]
    assert "credited to 'payer': 4.000000" in run("assign", kept, "payer").stderr
    started = await shop.start("3", provider="lolz")
    args = ("record", "lolz", "--transaction", "lzt-1", "--amount", "3", "--reference", started["id"])
    assert "credited" in run(*args).stderr
    assert "already recorded" in run(*args).stderr
    shown = run("show", started["id"]).stdout
    assert "credited 3.000000" in shown and "manual:lzt-1\tpaid\tapplied" in shown
    assert f"payment:{started['id']}" in shown
    assert await shop.balance() - before == 7 * MICRO
    assert await shop.reconciled() == 7 * MICRO
    nobody = cli("payments", "list", "--account", "nobody", "--config", str(shop.config))
    assert nobody.returncode == 1 and "no account named 'nobody'" in nobody.stderr
    wrong = cli("payments", "assign", kept, "nobody", "--config", str(shop.config))
    assert wrong.returncode == 1 and "no account named 'nobody'" in wrong.stderr
    again = cli("payments", "assign", kept, "payer", "--config", str(shop.config))
    assert again.returncode == 1 and "only an unmatched one" in again.stderr and "Traceback" not in again.stderr


@pytest.fixture
async def page(browser, shop: Shop):  # noqa: F811
    context = await browser.new_context(base_url=shop.url("/"), viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    problems: list[str] = []  # a CSP violation or a script error shows here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    yield page
    await context.close()
    assert not problems, problems


def decoded_qr(data_uri: str) -> str:
    """What a banking app reads from the page's QR image."""
    assert data_uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1])))
    [found] = zxingcpp.read_barcodes(image)
    return found.text


async def test_a_user_tops_up_from_the_dashboard_and_sees_it_land(page, shop: Shop) -> None:
    await sign_in(page, shop.key)
    topup = page.locator("#topup")
    await expect(topup).to_contain_text("+10 % from 50 credits")
    await expect(topup).to_contain_text("+25 % from 200 credits")
    await page.fill("#topup input[name=amount]", "60")
    await page.select_option("#topup select[name=provider]", "bank")
    await page.click("#topup >> text=Continue")
    await expect(page.locator("#state")).to_have_text("created")
    await expect(page.locator("#pay")).to_have_text(f"{60 * RATE} VND")
    await expect(page.locator("#bonus")).to_have_text("+6.00")  # shown before paying
    await shot(page, "topup-1-how-to-pay")
    reference = (await page.locator("#content").inner_text()).strip()
    assert reference.startswith("IZ") and await page.locator("#account").inner_text() == "0123499999"
    payload = decoded_qr(await page.locator("#qr").get_attribute("src"))
    fields = parse(payload)
    assert crc_ok(payload) and fields["54"] == str(60 * RATE) and fields["53"] == "704"
    assert parse(fields["62"])["08"] == reference and "0123499999" in fields["38"]

    resp = await shop.bank(sepay_notification(f"{reference} chuyen khoan", 60 * RATE))
    assert resp.status == 200
    await page.reload()
    await expect(page.locator("#state")).to_have_text("credited")
    await expect(page.locator("#credited")).to_have_text("66.00")
    assert await page.locator("#how").count() == 0
    await shot(page, "topup-2-credited")
    await page.click("text=Back to my account")
    await expect(page.locator("#payments")).to_contain_text(reference)
    await expect(page.locator("#payments")).to_contain_text("credited")
    assert await shop.reconciled() == 66 * MICRO


async def test_the_operator_assigns_unmatched_money(page, shop: Shop) -> None:
    await shop.bank(sepay_notification("tien nap cho payer", 8 * RATE))
    before = await shop.balance()
    await sign_in(page, ADMIN)
    await page.click("nav >> text=Payments")
    await page.select_option("select[name=state]", "unmatched")
    await page.click("text=Show")
    row = page.locator("#payments tr", has_text="unmatched")
    await expect(row).to_have_count(1)
    await row.locator("a").click()
    await expect(page.locator(".notice")).to_contain_text("tien nap cho payer")
    await page.fill("#assign input[name=account]", "payer")
    await page.click("text=Assign and credit")
    await expect(page.locator("h1")).to_contain_text("credited")
    await expect(page.locator("#entries")).to_contain_text("+8.000000")
    await shot(page, "topup-3-operator-assigned")
    assert await shop.balance() - before == 8 * MICRO


async def test_an_ip_forging_notifications_is_blocked(shop: Shop) -> None:
    started = await shop.start("10")
    note = sepay_notification(started["id"], 10 * RATE)
    statuses = [(await shop.bank(note, key=f"guess-{i}")).status for i in range(11)]
    assert statuses[:9] == [401] * 9 and statuses[9:] == [403, 403]  # blocked at the 10th failure (ip_block)
    resp = await shop.bank(note)  # even the right key, from that IP, for now
    assert resp.status == 403 and (await resp.json())["error"]["type"] == "ip_blocked"
    assert (await shop.payment(started["id"])).state == "created"
    assert len([e for e in await shop.ledger.payment_events() if e.outcome == "rejected"]) == 10


async def test_a_notification_is_bounded(shop: Shop) -> None:
    big = b'{"id": 1, "content": "' + b"x" * 300_000 + b'"}'
    resp = await shop.bank(big)
    assert resp.status == 413 and "at most" in (await resp.json())["error"]["message"]


async def test_waiting_top_ups_are_capped(shop: Shop) -> None:
    for _ in range(10):
        await shop.start("1", provider="lolz")
    status, body = await shop.call("POST", "/v1/payments", json={"amount": "1", "provider": "lolz"})
    assert status == 429 and "10 top-ups are waiting to be paid" in body["error"]["message"]
    await shop.server.app[PAYMENTS].sweep(time.time() + 7200)  # they expire
    assert (await shop.start("1", provider="lolz"))["state"] == "created"
