"""The cryptomus payment provider: Cryptomus's signature and PHP's JSON, invoices against the
fake Cryptomus, webhooks read, mapped and rejected, options checked at start."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from types import MappingProxyType

import aiohttp
import orjson
import pytest
from aiohttp import web
from izzi_payment_cryptomus import STATUSES, CryptomusProvider
from izzi_payment_cryptomus.sign import php_json, sign

from izzi_proxy.config_reader import Secret
from izzi_proxy.payments import (
    CONFIRMED,
    PaymentConfig,
    PaymentConfigError,
    PaymentProvider,
    PaymentUnavailable,
    TopUpRequest,
    WebhookRejected,
    installed_kinds,
)
from izzi_proxy.testing import cryptomus as fake
from izzi_proxy.testing.cryptomus import CRYPTOMUS, fake_cryptomus_app, notify, signed_body, webhook_data

MERCHANT = "8b03432e-385b-4670-8d06-064591096795"
KEY = "test-payment-key-0123456789"

# Written by PHP 8.2: the array below with ``sign = md5(base64_encode(json_encode($data,
# JSON_UNESCAPED_UNICODE)) . KEY)`` added, sent as ``json_encode($data)`` (PHP's default
# escapes: ``\/`` and ``\uXXXX``), so neither of our encoders produced it.
PHP_WEBHOOK = (
    b'{"type":"payment","uuid":"62f88b36-a9d5-4fa6-aa26-e040c3dbf26d","order_id":"IZAB12CD34EF",'
    b'"amount":"10.00","payment_amount":"10.50","payment_amount_usd":"10.49","merchant_amount":"10.28",'
    b'"commission":"0.21","is_final":true,"status":"paid_over","from":"TX7w3cU9Zm3ARvWBV2NQd5kJ2pRk3e5f1q",'
    b'"wallet_address_uuid":null,"network":"tron","currency":"USD","payer_currency":"USDT","payer_amount":"10.50",'
    b'"additional_data":"izzi account Nguy\\u1ec5n V\\u0103n A \\u2014 https:\\/\\/izzi.example\\/a\\/b \\u2615",'
    b'"convert":{"to_currency":"USDT","commission":null,"rate":"1.00","amount":"10.28"},'
    b'"txid":"3b7c0bd4dc8f0bc0a3d7b1c6e2a4f2c8c7e0f1d2a3b4c5d6e7f8091a2b3c4d5e",'
    b'"sign":"96d4a6e37af07d781445126d6737007b"}'
)
# json_decode($in, true) then json_encode(..., JSON_UNESCAPED_UNICODE), by PHP 8.2.
PHP_IN = (
    '{"a":-0.0,"b":1e17,"c":0.0001,"d":1.5e-7,"e":123456.789,"f":123456789012345678901,"g":9223372036854775807,'
    '"h":9223372036854775808,"i":{"0":"a","1":"b"},"j":{"1":"a"},"k":"\\u001b\\u001f\\u2029\\b\\f\\n\\r","l":-1.25e-10,'
    '"n":0.1e-3,"p":[{}],"q":{"0":"x","2":"y"},"s":false,"u":5e-324,"v":{"":1},"w":123e15,"x":100.0,"y":1e16,'
    '"z":"Cà phê ☕ 😀 a\\\\/b \\"q\\" \\u007f"}'
)
PHP_OUT = (
    '{"a":-0,"b":1.0e+17,"c":0.0001,"d":1.5e-7,"e":123456.789,"f":1.2345678901234568e+20,"g":9223372036854775807,'
    '"h":9.223372036854776e+18,"i":["a","b"],"j":{"1":"a"},"k":"\\u001b\\u001f\\u2029\\b\\f\\n\\r","l":-1.25e-10,'
    '"n":0.0001,"p":[[]],"q":{"0":"x","2":"y"},"s":false,"u":5.0e-324,"v":{"":1},"w":1.23e+17,"x":100,'
    '"y":10000000000000000,"z":"Cà phê ☕ 😀 a\\\\\\/b \\"q\\" \x7f"}'
)


def config(**options) -> PaymentConfig:
    values = {"merchant": MERCHANT, "api_key": Secret("CRYPTOMUS_KEY", KEY), **options}
    return PaymentConfig("crypto", "cryptomus", MappingProxyType({k: v for k, v in values.items() if v is not None}))


def topup(credits: int = 10_000_000, callback: str | None = "https://izzi.example/payments/crypto/webhook"):
    return TopUpRequest("IZAB12CD34EF", credits, "alice", callback)


@pytest.fixture
async def cryptomus(aiohttp_server):
    server = await aiohttp_server(fake_cryptomus_app(MERCHANT, KEY))
    async with aiohttp.ClientSession() as session:
        provider = CryptomusProvider.from_config(config(base_url=str(server.make_url(""))), session)
        provider.server = server
        yield provider


def provider(api_key: str = KEY) -> CryptomusProvider:
    return CryptomusProvider.from_config(config(api_key=Secret("K", api_key)), None)


# signing


def test_sign_is_md5_of_base64_and_key() -> None:
    body = b'{"amount":"10.00","currency":"USD","order_id":"IZAB12CD34EF"}'
    assert sign(body, KEY) == "d22efef288cc6a5f7d4724b798ccb3bb"  # printf | base64 -w0 | md5sum
    assert sign(body, KEY) == hashlib.md5(base64.b64encode(body) + KEY.encode()).hexdigest()
    assert sign(body, KEY) != sign(body, KEY + "x") and sign(body + b" ", KEY) != sign(body, KEY)


def test_json_is_written_as_php_writes_it() -> None:
    assert php_json(orjson.loads(PHP_IN)).decode() == PHP_OUT
    assert php_json({"url": "https://pay.cryptomus.com/pay/x"}) == b'{"url":"https:\\/\\/pay.cryptomus.com\\/pay\\/x"}'
    assert php_json({"t": "Nguyễn\u2028"}) == '{"t":"Nguyễn\\u2028"}'.encode()
    with pytest.raises(UnicodeEncodeError):
        php_json({"t": "\ud800"})


def test_the_fake_writes_json_as_the_plugin_reads_it() -> None:
    data = orjson.loads(PHP_WEBHOOK)
    data.pop("sign")
    assert fake.php_json(data) == php_json(data)
    assert fake.php_json(data, escape_unicode=True) == PHP_WEBHOOK.split(b',"sign"')[0] + b"}"


def test_a_webhook_signed_by_php_verifies() -> None:
    [confirmation] = provider().parse_webhook({}, PHP_WEBHOOK)
    assert confirmation.status == "paid" and confirmation.credits == 10_490_000
    assert confirmation.raw["additional_data"] == "izzi account Nguyễn Văn A — https://izzi.example/a/b ☕"
    with pytest.raises(WebhookRejected):
        provider("another-key").parse_webhook({}, PHP_WEBHOOK)


# invoices against the fake Cryptomus


async def test_create_makes_an_invoice(cryptomus) -> None:
    invoice = await cryptomus.create(topup(10_000_001))
    state = cryptomus.server.app[CRYPTOMUS]
    [made] = state.invoices.values()
    assert state.received == [{
        "amount": "10.01", "currency": "USD", "order_id": "IZAB12CD34EF",
        "url_callback": "https://izzi.example/payments/crypto/webhook", "lifetime": 3600,
        "additional_data": "izzi account alice",
    }]  # fmt: skip
    assert (invoice.currency, invoice.amount, invoice.external_id) == ("USD", "10.01", made.uuid)
    assert invoice.pay_url == f"https://pay.cryptomus.com/pay/{made.uuid}"
    assert invoice.expires_at == int(made.created_at) + 3600
    assert invoice.details == {"invoice": made.uuid, "order_id": "IZAB12CD34EF", "status": "check"}
    assert isinstance(cryptomus, PaymentProvider)


@pytest.mark.parametrize(("credits", "amount"), [(1, "0.01"), (10_000, "0.01"), (10_001, "0.02"), (5_000_000, "5.00")])
async def test_amount_is_rounded_up_to_the_cent(cryptomus, credits, amount) -> None:
    assert (await cryptomus.create(topup(credits))).amount == amount


async def test_create_without_callback_sends_none(cryptomus) -> None:
    await cryptomus.create(topup(callback=None))
    assert "url_callback" not in cryptomus.server.app[CRYPTOMUS].received[0]


async def test_the_same_reference_gets_the_same_invoice(cryptomus) -> None:
    first, again = await cryptomus.create(topup()), await cryptomus.create(topup())
    assert first.external_id == again.external_id and len(cryptomus.server.app[CRYPTOMUS].invoices) == 1


async def test_a_wrong_key_is_refused_without_showing_it(aiohttp_server) -> None:
    server = await aiohttp_server(fake_cryptomus_app(MERCHANT, "the-real-key"))
    async with aiohttp.ClientSession() as session:
        wrong = CryptomusProvider.from_config(config(base_url=str(server.make_url(""))), session)
        with pytest.raises(PaymentUnavailable, match="HTTP 401: Invalid Sign") as caught:
            await wrong.create(topup())
    assert KEY not in str(caught.value) and "the-real-key" not in str(caught.value)
    assert server.app[CRYPTOMUS].invoices == {}


async def test_a_wrong_merchant_is_refused(aiohttp_server) -> None:
    server = await aiohttp_server(fake_cryptomus_app("another-merchant", KEY))
    async with aiohttp.ClientSession() as session:
        wrong = CryptomusProvider.from_config(config(base_url=str(server.make_url(""))), session)
        with pytest.raises(PaymentUnavailable, match="HTTP 401: Merchant not found"):
            await wrong.create(topup())


async def test_field_errors_are_named(cryptomus) -> None:
    with pytest.raises(PaymentUnavailable, match=r"HTTP 422: url_callback: validation\.url"):
        await cryptomus.create(topup(callback="x"))


async def test_a_server_error_is_unavailable(cryptomus) -> None:
    cryptomus.server.app[CRYPTOMUS].fail_status = 503
    with pytest.raises(PaymentUnavailable, match="HTTP 503: Server error"):
        await cryptomus.create(topup())


async def test_a_slow_cryptomus_times_out(cryptomus) -> None:
    cryptomus.server.app[CRYPTOMUS].delay_s = 2
    cryptomus.timeout_s = 0.2
    with pytest.raises(PaymentUnavailable, match=r"no answer from http://127\.0\.0\.1:\d+ within 0.2s"):
        await cryptomus.create(topup())


async def test_cryptomus_down_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        down = CryptomusProvider.from_config(config(base_url=f"http://127.0.0.1:{port}"), session)
        with pytest.raises(PaymentUnavailable, match=r"cannot reach http://127\.0\.0\.1:\d+"):
            await down.create(topup())


async def test_a_body_that_is_not_json_is_unavailable(aiohttp_server) -> None:
    app = web.Application()

    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(text="<html>502 Bad Gateway</html>", status=502)

    app.router.add_post("/v1/payment", bad_gateway)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session:
        broken = CryptomusProvider.from_config(config(base_url=str(server.make_url(""))), session)
        with pytest.raises(PaymentUnavailable, match="HTTP 502 with a body that is not a JSON object"):
            await broken.create(topup())


# webhooks


def invoice(**overrides) -> fake.FakeInvoice:
    values = dict(uuid="62f88b36-a9d5-4fa6-aa26-e040c3dbf26d", order_id="IZAB12CD34EF", amount="10.00",
                  currency="USD", url_callback=None, lifetime=3600, additional_data=None, created_at=0.0)  # fmt: skip
    return fake.FakeInvoice(**(values | overrides))


def webhook(status: str, paid: str | None = None, key: str = KEY, **extra) -> bytes:
    return signed_body(key, webhook_data(invoice(), status, paid, **extra))


def test_paid_credits_what_was_paid_in_usd() -> None:
    [paid] = provider().parse_webhook({}, webhook("paid", "10.00"))
    assert (paid.status, paid.credits, paid.reference) == ("paid", 10_000_000, "IZAB12CD34EF")
    assert paid.external_id == "62f88b36-a9d5-4fa6-aa26-e040c3dbf26d" and paid.amount == "10.00 USD"
    assert paid.event_id == "62f88b36-a9d5-4fa6-aa26-e040c3dbf26d:paid" and paid.detail == "cryptomus paid"
    assert paid.raw["txid"] and paid.raw["status"] == "paid"


def test_paid_over_credits_all_of_it_rounded_down_to_the_microcredit() -> None:
    [over] = provider().parse_webhook({}, webhook("paid_over", "12.3456789"))
    assert (over.status, over.credits) == ("paid", 12_345_678)


def test_a_resent_notification_has_the_same_event_id() -> None:
    first, again = (provider().parse_webhook({}, webhook("paid"))[0] for _ in range(2))
    later = provider().parse_webhook({}, webhook("refund_paid"))[0]
    assert first.event_id == again.event_id != later.event_id


@pytest.mark.parametrize("status", ["wrong_amount", "cancel", "fail", "system_fail"])
def test_failures_credit_nothing(status) -> None:
    [failed] = provider().parse_webhook({}, webhook(status, "4.00"))
    assert (failed.status, failed.credits) == ("failed", None) and failed.detail.startswith(f"cryptomus {status}")


def test_wrong_amount_says_what_was_paid() -> None:
    [failed] = provider().parse_webhook({}, webhook("wrong_amount", "4.00"))
    assert failed.detail == "cryptomus wrong_amount: paid 4.00 USD of 10.00 USD"


@pytest.mark.parametrize(("status", "ours"), [("refund_process", "pending"), ("refund_fail", "pending"),
                                              ("refund_paid", "refunded")])  # fmt: skip
def test_refunds(status, ours) -> None:
    [refund] = provider().parse_webhook({}, webhook(status, "10.00"))
    assert (refund.status, refund.credits) == (ours, None) and status in refund.detail


@pytest.mark.parametrize(
    "status", ["process", "check", "confirm_check", "wrong_amount_waiting", "locked", "something_new"]
)
def test_everything_else_is_pending(status) -> None:
    [pending] = provider().parse_webhook({}, webhook(status))
    assert (pending.status, pending.credits) == ("pending", None) and status in pending.detail


def test_every_mapped_status_is_ours() -> None:
    assert set(STATUSES.values()) <= set(CONFIRMED) and len(STATUSES) == 14


def test_paid_without_a_usd_amount_is_unreadable() -> None:
    with pytest.raises(WebhookRejected, match="payment_amount_usd") as caught:
        provider().parse_webhook({}, signed_body(KEY, webhook_data(invoice(), "paid") | {
            "payment_amount_usd": None, "payment_amount": None}))  # fmt: skip
    assert caught.value.status == 400


def test_a_forged_sign_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="wrong sign") as caught:
        provider().parse_webhook({}, webhook("paid", key="guessed-key"))
    assert caught.value.status == 401 and KEY not in str(caught.value)


def test_a_missing_sign_is_rejected() -> None:
    body = fake.php_json(webhook_data(invoice(), "paid"))
    with pytest.raises(WebhookRejected, match="no sign") as caught:
        provider().parse_webhook({}, body)
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("field", "value"), [("payment_amount_usd", "1000.00"), ("order_id", "IZOTHER00000"), ("status", "paid_over")]
)
def test_a_tampered_field_is_rejected(field, value) -> None:
    data = orjson.loads(webhook("paid", "10.00"))
    data[field] = value
    with pytest.raises(WebhookRejected, match="wrong sign") as caught:
        provider().parse_webhook({}, orjson.dumps(data))
    assert caught.value.status == 401


def test_reordered_fields_are_rejected() -> None:
    data = orjson.loads(webhook("paid"))
    reordered = {"status": data.pop("status"), **data}
    with pytest.raises(WebhookRejected, match="wrong sign"):
        provider().parse_webhook({}, orjson.dumps(reordered))


def test_a_sign_that_is_not_ascii_is_rejected_not_crashed() -> None:
    data = orjson.loads(webhook("paid")) | {"sign": "ẞ" * 32}
    with pytest.raises(WebhookRejected, match="wrong sign"):
        provider().parse_webhook({}, orjson.dumps(data))


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"paid"', b'{"sign": NaN}', b'{"a": "\xff"}'])
def test_an_unreadable_body_is_400(body) -> None:
    with pytest.raises(WebhookRejected) as caught:
        provider().parse_webhook({}, body)
    assert caught.value.status == 400


def test_a_signed_body_without_uuid_is_400() -> None:
    data = webhook_data(invoice(), "paid")
    del data["uuid"]
    with pytest.raises(WebhookRejected, match="no uuid") as caught:
        provider().parse_webhook({}, signed_body(KEY, data))
    assert caught.value.status == 400


@pytest.mark.parametrize("escape_unicode", [False, True])
def test_slashes_and_unicode_verify_as_cryptomus_signs_them(escape_unicode) -> None:
    body = signed_body(
        KEY,
        webhook_data(invoice(), "paid", additional_data="Thanh toán cho https://izzi.example/a/b — 😀 \u2028 \t"),
        escape_unicode=escape_unicode,
    )
    assert b"https:\\/\\/izzi.example\\/a\\/b" in body and (b"\\u00e1" in body) is escape_unicode
    [paid] = provider().parse_webhook({}, body)
    assert paid.raw["additional_data"] == "Thanh toán cho https://izzi.example/a/b — 😀 \u2028 \t"
    assert paid.credits == 10_000_000


def test_a_body_with_unescaped_slashes_verifies_too() -> None:
    """The sign is over PHP's writing of the object, not over the bytes as they came."""
    body = orjson.dumps(orjson.loads(webhook("paid", additional_data="https://izzi.example/")))
    assert b"https://izzi.example/" in body
    assert provider().parse_webhook({}, body)[0].status == "paid"


async def test_notify_posts_a_signed_webhook_to_the_callback(cryptomus, aiohttp_server) -> None:
    seen = []

    async def receive(request: web.Request) -> web.Response:
        try:
            seen.extend(cryptomus.parse_webhook(request.headers, await request.read()))
        except WebhookRejected as err:
            return web.Response(status=err.status, text=str(err))
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/payments/crypto/webhook", receive)
    gateway = await aiohttp_server(receiver)
    invoice = await cryptomus.create(topup(callback=str(gateway.make_url("/payments/crypto/webhook"))))
    app = cryptomus.server.app
    assert await notify(cryptomus.server, invoice.external_id, "confirm_check") == 200
    assert await notify(app, invoice.external_id, "paid_over", "10.25", escape_unicode=True) == 200
    assert [(c.status, c.credits, c.reference) for c in seen] == [
        ("pending", None, "IZAB12CD34EF"),
        ("paid", 10_250_000, "IZAB12CD34EF"),
    ]
    assert app[CRYPTOMUS].invoices[invoice.external_id].status == "paid_over"
    app[CRYPTOMUS].api_key = "not-the-merchant-key"  # as a forger would sign
    assert await notify(app, invoice.external_id, "paid") == 401


# options


def test_the_entry_point_names_the_class() -> None:
    assert installed_kinds()["cryptomus"].load() is CryptomusProvider


def test_the_merchant_may_come_from_the_environment() -> None:
    made = CryptomusProvider.from_config(config(merchant=Secret("CRYPTOMUS_MERCHANT", f" {MERCHANT} ")), None)
    assert made.merchant == MERCHANT


def test_options_are_read() -> None:
    made = CryptomusProvider.from_config(
        config(base_url="https://cryptomus.example/", lifetime_s=300, timeout_s=3), None
    )
    assert (made.merchant, made.base_url, made.lifetime_s, made.timeout_s) == (
        MERCHANT, "https://cryptomus.example", 300, 3.0
    )  # fmt: skip
    assert KEY not in repr(made)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"api_key": Secret("CRYPTOMUS_KEY", None)},
            "crypto.api_key: set the environment variable CRYPTOMUS_KEY",
        ),
        ({"api_key": None}, 'api_key: is required, from the environment: write api_key = "env:NAME"'),
        ({"api_key": KEY}, "api_key: is required, from the environment"),
        ({"merchant": None}, "merchant: is required"),
        ({"merchant": "  "}, "merchant: is empty"),
        ({"lifetime_s": 299}, "lifetime_s: Cryptomus takes 300 to 43200 seconds, got 299"),
        ({"lifetime_s": 43201}, "lifetime_s: Cryptomus takes 300 to 43200 seconds"),
        ({"lifetime_s": "1h"}, "lifetime_s: expected int"),
        ({"timeout_s": 0}, "timeout_s: must be more than 0"),
        ({"base_url": "ftp://api.cryptomus.com"}, "base_url: expected an http(s) URL"),
        ({"base_url": "api.cryptomus.com"}, "base_url: expected an http(s) URL"),
        ({"webhook_secret": "x"}, "webhook_secret: unknown option for cryptomus; known: merchant, api_key"),
    ],
)
def test_bad_options_stop_the_start(options, message) -> None:
    with pytest.raises(PaymentConfigError, match=re.escape(message)):
        CryptomusProvider.from_config(config(**options), None)


async def test_aclose_leaves_the_session_open(cryptomus) -> None:
    await cryptomus.aclose()
    assert not cryptomus.session.closed
