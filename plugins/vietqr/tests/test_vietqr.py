"""The vietqr payment plugin: the VietQR payload against published samples, the QR code it is
drawn as (read back with a real decoder), the invoice, SePay's webhook and the options."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
import zxingcpp
from aiohttp import web
from izzi_payment_vietqr import VietQRProvider, crc_ok, parse, vietqr_payload
from PIL import Image

from izzi_proxy.config_reader import Secret
from izzi_proxy.dashboard.qr import png_data_uri
from izzi_proxy.payments import PaymentConfig, PaymentConfigError, TopUpRequest, WebhookRejected, load_kind
from izzi_proxy.testing.bank import push, sepay_notification

KEY = "sepay-key-for-tests"
REFERENCE = "IZ7K3M9Q2XAB"

# Published samples with their CRCs: the test table of subiz/vietqr (github.com/subiz/vietqr,
# vietqr_test.go, TestQR) and the example in its README. (bank BIN, account, amount, purpose, payload)
SAMPLES = [
    ("970422", "0023457923442", 40123, "test text string",
     "00020101021238570010A00000072701270006970422011300234579234420208QRIBFTTA53037045405401235802VN62200816test text string6304D9C6"),
    ("970422", "0023457923442ASDFLJ", 40123, "chuyen khoan alsdkf laksj",  # 19-character account, 25-character purpose
     "00020101021238630010A0000007270133000697042201190023457923442ASDFLJ0208QRIBFTTA53037045405401235802VN62290825chuyen khoan alsdkf laksj6304E5DB"),
    ("970423", "0099999999", None, None,  # static: no amount, no purpose
     "00020101021138540010A00000072701240006970423011000999999990208QRIBFTTA53037045802VN6304CBB4"),
    ("970415", "0011001932418", 120000, "ung ho lu lut",
     "00020101021238570010A00000072701270006970415011300110019324180208QRIBFTTA530370454061200005802VN62170813ung ho lu lut6304C15C"),
]  # fmt: skip


def payment_config(**overrides) -> PaymentConfig:
    options = {
        "bank_bin": "970436", "account_number": "0123499999", "account_name": "CONG TY IZZI",
        "bank_name": "Vietcombank", "vnd_per_credit": 26000, "webhook_key": Secret("SEPAY_WEBHOOK_KEY", KEY),
    }  # fmt: skip
    options.update(overrides)
    return PaymentConfig(name="bank", kind="vietqr", options={k: v for k, v in options.items() if v is not None})


@pytest.fixture
def provider() -> VietQRProvider:
    return VietQRProvider.from_config(payment_config(), None)  # the session is never used


def webhook(provider: VietQRProvider, body, auth: str | None = f"Apikey {KEY}"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return provider.parse_webhook({"Authorization": auth} if auth is not None else {}, raw)


# The payload


@pytest.mark.parametrize(("bank_bin", "account", "amount", "purpose", "sample"), SAMPLES)
def test_published_sample_is_reproduced_and_its_crc_verifies(bank_bin, account, amount, purpose, sample):
    assert vietqr_payload(bank_bin, account, amount, purpose) == sample
    assert crc_ok(sample)


@pytest.mark.parametrize("sample", [s[-1] for s in SAMPLES])
def test_any_one_character_change_breaks_the_crc(sample):
    for at, char in enumerate(sample):
        for other in ("0", "A") if char not in "0A" else ("1", "B"):
            assert not crc_ok(sample[:at] + other + sample[at + 1 :]), (at, other)
    assert not crc_ok(sample[:-1]) and not crc_ok(sample + "0")


def test_parse_reads_nested_fields_and_rejects_a_cut_string():
    fields = parse(SAMPLES[0][-1])
    assert list(fields) == ["00", "01", "38", "53", "54", "58", "62", "63"]
    merchant = parse(fields["38"])
    assert parse(merchant["01"]) == {"00": "970422", "01": "0023457923442"}
    assert parse(fields["62"]) == {"08": "test text string"}
    with pytest.raises(ValueError, match="cut short"):
        parse(SAMPLES[0][-1][:-2])
    with pytest.raises(ValueError, match="malformed"):
        parse("0002010x")


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("97043", "0123", 1000, "x"), "BIN must be 6 digits"),
        (("97043a", "0123", 1000, "x"), "BIN must be 6 digits"),
        (("970436", "0123-456", 1000, "x"), "account number"),
        (("970436", "1" * 20, 1000, "x"), "account number"),
        (("970436", "0123", 0, "x"), "positive whole number"),
        (("970436", "0123", -5, "x"), "positive whole number"),
        (("970436", "0123", 1.5, "x"), "positive whole number"),
        (("970436", "0123", 10**13, "x"), "13 digits"),
        (("970436", "0123", 1000, "x" * 26), "at most 25"),
        (("970436", "0123", 1000, "chuyển khoản"), "printable ASCII"),
    ],
)
def test_bad_inputs_are_refused(args, problem):
    with pytest.raises(ValueError, match=problem):
        vietqr_payload(*args)


# The invoice


async def test_create_makes_a_vietqr_for_the_account_amount_and_reference(provider):
    invoice = await provider.create(TopUpRequest(REFERENCE, 10_000_000, "alice", None))
    assert (invoice.currency, invoice.amount, invoice.expires_at, invoice.pay_url) == ("VND", "260000", None, None)
    assert {k: v for k, v in invoice.details.items() if k != "qr_payload"} == {
        "bank_bin": "970436", "bank_name": "Vietcombank", "account_number": "0123499999",
        "account_name": "CONG TY IZZI", "transfer_content": REFERENCE,
    }  # fmt: skip
    payload = invoice.details["qr_payload"]
    assert crc_ok(payload)
    fields = parse(payload)
    assert {k: fields[k] for k in ("00", "01", "53", "54", "58")} == {
        "00": "01", "01": "12", "53": "704", "54": "260000", "58": "VN",
    }  # fmt: skip
    merchant = parse(fields["38"])
    assert (merchant["00"], merchant["02"]) == ("A000000727", "QRIBFTTA")
    assert parse(merchant["01"]) == {"00": "970436", "01": "0123499999"}
    assert parse(fields["62"]) == {"08": REFERENCE}
    assert fields["63"] == payload[-4:]


@pytest.mark.parametrize(
    ("rate", "credits", "vnd"),
    [(26000, 1, 1), (26000, 1_500_001, 39001), (26000, 1_500_000, 39000), (25450.5, 2_000_000, 50901), (0.5, 3, 1)],
)
async def test_vnd_is_rounded_up_to_the_dong(rate, credits, vnd):
    provider = VietQRProvider.from_config(payment_config(vnd_per_credit=rate), None)
    invoice = await provider.create(TopUpRequest(REFERENCE, credits, "alice", None))
    assert invoice.amount == str(vnd) == parse(invoice.details["qr_payload"])["54"]


async def test_no_bank_name_no_bank_name_in_the_details():
    provider = VietQRProvider.from_config(payment_config(bank_name=None), None)
    invoice = await provider.create(TopUpRequest(REFERENCE, 1_000_000, "alice", None))
    assert "bank_name" not in invoice.details


async def test_the_png_reads_back_as_the_same_payload(provider):
    invoice = await provider.create(TopUpRequest(REFERENCE, 10_000_000, "alice", None))
    uri = png_data_uri(invoice.details["qr_payload"])
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.removeprefix("data:image/png;base64,"))))
    found = zxingcpp.read_barcodes(image)
    assert [(r.format, r.text) for r in found] == [(zxingcpp.BarcodeFormat.QRCode, invoice.details["qr_payload"])]
    assert found[0].ec_level == "M"


# SePay's webhook


def test_money_in_is_one_paid_confirmation(provider):
    body = {
        "id": 92704, "gateway": "Vietcombank", "transactionDate": "2023-03-25 14:02:37",
        "accountNumber": "0123499999", "code": None, "content": f"chuyen tien {REFERENCE}", "transferType": "in",
        "transferAmount": 2277000, "accumulated": 19077000, "subAccount": None,
        "referenceCode": "MBVCB.3278907687", "description": "",
    }  # fmt: skip
    [confirmation] = webhook(provider, body)
    assert confirmation.event_id == "Vietcombank:92704"
    assert (confirmation.status, confirmation.reference) == ("paid", None)
    assert confirmation.text == f"chuyen tien {REFERENCE}"
    assert confirmation.credits == 87_576_923  # 2,277,000 VND / 26,000 per credit, rounded down, in µcr
    assert confirmation.amount == "2277000 VND"
    assert confirmation.detail == "Vietcombank MBVCB.3278907687"
    assert confirmation.raw == body


def test_description_and_code_join_the_text(provider):
    body = sepay_notification("CT DEN:123", 26000, description=f"BankAPINotify {REFERENCE}", code="IZ")
    [confirmation] = webhook(provider, body)
    assert confirmation.text == f"CT DEN:123 BankAPINotify {REFERENCE} IZ"
    assert confirmation.credits == 1_000_000


@pytest.mark.parametrize("auth", [None, "", f"Bearer {KEY}", "Apikey wrong-key", "Apikey", f"Apikey {KEY}x"])
def test_no_or_a_wrong_key_is_401(provider, auth):
    with pytest.raises(WebhookRejected) as e:
        webhook(provider, sepay_notification(REFERENCE, 26000), auth=auth)
    assert e.value.status == 401
    assert "wrong-key" not in str(e.value)


def test_the_header_name_is_case_insensitive(provider):
    body = json.dumps(sepay_notification(REFERENCE, 26000)).encode()
    assert len(provider.parse_webhook({"authorization": f"Apikey {KEY}"}, body)) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        {**sepay_notification(REFERENCE, 26000), "transferType": "sideways"},
        {k: v for k, v in sepay_notification(REFERENCE, 26000).items() if k != "transferType"},
        {k: v for k, v in sepay_notification(REFERENCE, 26000).items() if k != "id"},
        {k: v for k, v in sepay_notification(REFERENCE, 26000).items() if k != "content"},
        sepay_notification(REFERENCE, 0),
        sepay_notification(REFERENCE, -26000),
        {**sepay_notification(REFERENCE, 26000), "transferAmount": 26000.5},
        {**sepay_notification(REFERENCE, 26000), "transferAmount": "26000"},
        {**sepay_notification(REFERENCE, 26000), "transferAmount": True},
    ],
)
def test_unreadable_notifications_are_400(provider, body):
    with pytest.raises(WebhookRejected) as e:
        webhook(provider, body)
    assert e.value.status == 400


def test_money_out_is_nothing_to_do(provider):
    assert webhook(provider, sepay_notification(REFERENCE, 26000, transfer_type="out")) == []


def test_a_wrong_key_is_refused_before_the_body_is_read(provider):
    with pytest.raises(WebhookRejected) as e:
        webhook(provider, b"{not json", auth="Apikey nope")
    assert e.value.status == 401


async def test_the_fake_bank_pushes_as_sepay_does(provider, aiohttp_server, aiohttp_client):
    async def receive(request: web.Request) -> web.Response:
        try:
            confirmations = provider.parse_webhook(request.headers, await request.read())
        except WebhookRejected as e:
            return web.json_response({"success": False, "message": str(e)}, status=e.status)
        return web.json_response({"success": True, "events": [c.event_id for c in confirmations]})

    app = web.Application()
    app.router.add_post("/payments/bank/webhook", receive)
    client = await aiohttp_client(await aiohttp_server(app))
    url = str(client.make_url("/payments/bank/webhook"))
    first, second = sepay_notification(REFERENCE, 26000), sepay_notification(REFERENCE, 26000)
    assert first["id"] != second["id"]
    resp = await push(client.session, url, KEY, first)
    assert (resp.status, await resp.json()) == (200, {"success": True, "events": [f"Vietcombank:{first['id']}"]})
    assert (await push(client.session, url, "wrong", first)).status == 401
    assert (await push(client.session, url, None, first)).status == 401
    assert (await push(client.session, url, KEY, b"{not json")).status == 400


# Options


def test_the_entry_point_names_the_class():
    assert load_kind(PaymentConfig("bank", "vietqr")) is VietQRProvider


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"webhook_key": Secret("SEPAY_WEBHOOK_KEY", None)},
            "webhook_key: set the environment variable SEPAY_WEBHOOK_KEY",
        ),
        ({"webhook_key": None}, 'webhook_key: is required, from the environment: write webhook_key = "env:NAME"'),
        ({"webhook_key": KEY}, "webhook_key: is required, from the environment"),
        ({"bank_bin": "97043"}, "bank_bin: must be the bank's 6-digit NAPAS BIN"),
        ({"bank_bin": 970436}, "bank_bin: expected str"),
        ({"bank_bin": None}, "bank_bin: is required"),
        ({"account_number": "0123 4999"}, "account_number: must be 1 to 19 digits or letters"),
        ({"account_number": None}, "account_number: is required"),
        ({"account_name": "  "}, "account_name: must not be empty"),
        ({"vnd_per_credit": 0}, "vnd_per_credit: must be a number of VND above 0"),
        ({"vnd_per_credit": -26000}, "vnd_per_credit: must be a number of VND above 0"),
        ({"vnd_per_credit": float("inf")}, "vnd_per_credit: must be a number of VND above 0"),
        ({"vnd_per_credit": "26000"}, "vnd_per_credit: expected"),
        ({"vnd_per_credit": True}, "vnd_per_credit: expected"),
        ({"vnd_per_credit": None}, "vnd_per_credit: is required"),
        ({"bank_nmae": "Vietcombank"}, "bank_nmae: unknown option; known: account_name, account_number"),
    ],
)
def test_bad_options_stop_the_start(overrides, problem):
    with pytest.raises(PaymentConfigError, match=re.escape(f"payments.providers.bank.{problem}")):
        VietQRProvider.from_config(payment_config(**overrides), None)
