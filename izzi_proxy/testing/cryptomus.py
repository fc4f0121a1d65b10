"""A fake Cryptomus merchant API, and the signed webhooks Cryptomus sends.

``fake_cryptomus_app(merchant, api_key)`` answers like ``https://api.cryptomus.com``:

==========================  ===============================================================
route                       behaviour
==========================  ===============================================================
``POST /v1/payment``        checks ``merchant`` (401, "Merchant not found") and ``sign``, the
                            md5 of the base64 of the exact body bytes followed by the key
                            (401, "Invalid Sign."); checks the fields (422 with ``errors`` per
                            field); makes an invoice (status ``check``) or, for an
                            ``order_id`` it has, returns that invoice again, as Cryptomus does
``POST /v1/payment/info``   the invoice of a ``uuid`` or ``order_id`` (404 when none)
==========================  ===============================================================

Answers are written as PHP writes them (``https:\\/\\/pay.cryptomus.com\\/pay\\/...``). The
error wordings are the fake's; Cryptomus's own may differ.

Its ``CryptomusState`` (``app[CRYPTOMUS]``) holds the invoices, every request body received,
and knobs: ``delay_s`` (wait before answering), ``fail_status`` (answer every call with that
HTTP status and a Cryptomus error body).

``notify(app, uuid, status, ...)`` posts a webhook for an invoice to its ``url_callback``,
signed as Cryptomus signs: ``sign`` = md5(base64(``json_encode($data,
JSON_UNESCAPED_UNICODE)``) . api_key) over the object without ``sign``, added as its last key.
``php_json`` is written here from PHP's rules on its own (not shared with the plugin), so
each checks the other.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
import uuid as uuids
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = [
    "CRYPTOMUS",
    "CryptomusState",
    "FakeInvoice",
    "fake_cryptomus_app",
    "notify",
    "php_json",
    "sign_of",
    "signed_body",
    "webhook_data",
]

FINAL = frozenset({"paid", "paid_over", "wrong_amount", "fail", "cancel", "system_fail", "refund_paid"})
_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_AMOUNT = re.compile(r"\d+(\.\d+)?")
_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def php_json(value: Any, *, escape_unicode: bool = False) -> bytes:
    """``json_encode($value, JSON_UNESCAPED_UNICODE)`` for the strings, ints, bools, nulls,
    lists and objects Cryptomus sends (``escape_unicode``: PHP's default, ``\\uXXXX`` for
    everything past ASCII)."""
    if isinstance(value, dict):
        items = (php_json(str(k), escape_unicode=escape_unicode) + b":" + php_json(v, escape_unicode=escape_unicode)
                 for k, v in value.items())  # fmt: skip
        return b"{" + b",".join(items) + b"}" if value else b"[]"
    if isinstance(value, list | tuple):
        return b"[" + b",".join(php_json(v, escape_unicode=escape_unicode) for v in value) + b"]"
    if value is None or isinstance(value, bool):
        return {None: b"null", True: b"true", False: b"false"}[value]
    if isinstance(value, int):
        return str(value).encode()
    if not isinstance(value, str):
        raise TypeError(f"the fake writes no {type(value).__name__}")
    out = []
    for char in value:
        code = ord(char)
        if char in _SHORT:
            out.append(_SHORT[char])
        elif code < 0x20 or code in (0x2028, 0x2029) or (escape_unicode and code > 0x7F):
            if code > 0xFFFF:  # as a UTF-16 surrogate pair
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return ('"' + "".join(out) + '"').encode()


def sign_of(body: bytes, api_key: str) -> str:
    """Cryptomus's ``sign``: md5(base64_encode($body) . $api_key), hex."""
    return hashlib.md5((base64.b64encode(body).decode() + api_key).encode()).hexdigest()


def signed_body(api_key: str, data: dict[str, Any], *, escape_unicode: bool = False) -> bytes:
    """A webhook body: ``data`` plus its ``sign`` (over ``data`` as PHP writes it, unicode
    unescaped), written as PHP writes it (``escape_unicode``: with ``\\uXXXX`` escapes)."""
    signature = sign_of(php_json(data), api_key)
    return php_json({**data, "sign": signature}, escape_unicode=escape_unicode)


@dataclass
class FakeInvoice:
    uuid: str
    order_id: str
    amount: str
    currency: str
    url_callback: str | None
    lifetime: int
    additional_data: str | None
    created_at: float
    status: str = "check"

    def result(self) -> dict[str, Any]:
        """The invoice as ``/v1/payment`` answers it."""
        return {
            "uuid": self.uuid, "order_id": self.order_id, "amount": self.amount, "payment_amount": None,
            "payer_amount": None, "discount_percent": None, "discount": "0.00000000", "payer_currency": None,
            "currency": self.currency, "merchant_amount": None, "network": None, "address": None, "from": None,
            "txid": None, "payment_status": self.status, "status": self.status,
            "url": f"https://pay.cryptomus.com/pay/{self.uuid}", "expired_at": int(self.created_at) + self.lifetime,
            "is_final": self.status in FINAL, "additional_data": self.additional_data,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(self.created_at)),
        }  # fmt: skip


@dataclass
class CryptomusState:
    merchant: str
    api_key: str
    invoices: dict[str, FakeInvoice] = field(default_factory=dict)  # by uuid
    received: list[dict[str, Any]] = field(default_factory=list)  # every body that passed the sign check
    delay_s: float = 0.0
    fail_status: int | None = None


CRYPTOMUS: web.AppKey[CryptomusState] = web.AppKey("fake.cryptomus")


def _error(status: int, message: str | None = None, errors: dict[str, list[str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"state": 1}
    if message:
        body["message"] = message
    if errors:
        body["errors"] = errors
    return _answer(body, status)


def _answer(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=php_json(body), status=status, content_type="application/json")


async def _signed(request: web.Request) -> dict[str, Any] | web.Response:
    """The verified JSON body of a merchant call, or the answer Cryptomus gives instead."""
    state = request.app[CRYPTOMUS]
    if state.delay_s:
        await asyncio.sleep(state.delay_s)
    if state.fail_status:
        return _error(state.fail_status, "Server error")
    body = await request.read()
    if request.headers.get("merchant") != state.merchant:
        return _error(401, "Merchant not found")
    if request.headers.get("sign") != sign_of(body, state.api_key):
        return _error(401, "Invalid Sign.")
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return _error(422, "The given data was invalid.")
    if not isinstance(data, dict):
        return _error(422, "The given data was invalid.")
    state.received.append(data)
    return data


def _problems(data: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    amount = data.get("amount")
    if not isinstance(amount, str) or not _AMOUNT.fullmatch(amount):
        errors["amount"] = ["validation.required" if amount is None else "validation.numeric"]
    if not isinstance(data.get("currency"), str) or not data["currency"]:
        errors["currency"] = ["validation.required"]
    if not isinstance(data.get("order_id"), str) or not _ORDER_ID.fullmatch(data["order_id"]):
        errors["order_id"] = ["validation.required" if data.get("order_id") is None else "validation.alpha_dash"]
    for key in ("url_callback", "url_return", "url_success"):
        url = data.get(key)
        if url is not None and (not isinstance(url, str) or not 6 <= len(url) <= 255 or "://" not in url):
            errors[key] = ["validation.url"]
    lifetime = data.get("lifetime", 3600)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or not 300 <= lifetime <= 43200:
        errors["lifetime"] = ["validation.between.numeric"]
    if "is_payment_multiple" in data and not isinstance(data["is_payment_multiple"], bool):
        errors["is_payment_multiple"] = ["validation.boolean"]
    return errors


async def _create(request: web.Request) -> web.Response:
    data = await _signed(request)
    if isinstance(data, web.Response):
        return data
    if errors := _problems(data):
        return _error(422, None, errors)
    state = request.app[CRYPTOMUS]
    invoice = next((i for i in state.invoices.values() if i.order_id == data["order_id"]), None)
    if invoice is None:
        extra = data.get("additional_data") if isinstance(data.get("additional_data"), str) else None
        invoice = FakeInvoice(
            str(uuids.uuid4()), data["order_id"], f"{Decimal(data['amount']):.2f}", data["currency"],
            data.get("url_callback"), data.get("lifetime", 3600), extra, time.time(),
        )  # fmt: skip
        state.invoices[invoice.uuid] = invoice
    return _answer({"state": 0, "result": invoice.result()})


async def _info(request: web.Request) -> web.Response:
    data = await _signed(request)
    if isinstance(data, web.Response):
        return data
    for invoice in request.app[CRYPTOMUS].invoices.values():
        if data.get("uuid") == invoice.uuid or data.get("order_id") == invoice.order_id:
            return _answer({"state": 0, "result": invoice.result()})
    return _error(404, "Payment not found")


def fake_cryptomus_app(merchant: str, api_key: str) -> web.Application:
    app = web.Application()
    app[CRYPTOMUS] = CryptomusState(merchant, api_key)
    app.router.add_post("/v1/payment", _create)
    app.router.add_post("/v1/payment/info", _info)
    return app


def _usd(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def webhook_data(
    invoice: FakeInvoice, status: str, payment_amount_usd: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A payment webhook's fields, in Cryptomus's order, for that invoice in that status:
    ``payment_amount_usd`` (default: the invoice's amount when paid, else "0.00") is what
    arrived; ``extra`` adds or overrides fields."""
    if payment_amount_usd is None:
        payment_amount_usd = invoice.amount if status in ("paid", "paid_over") else "0.00"
    try:
        paid = Decimal(payment_amount_usd)
    except InvalidOperation:
        paid = Decimal(0)
    commission = paid * Decimal("0.02")
    data: dict[str, Any] = {
        "type": "payment", "uuid": invoice.uuid, "order_id": invoice.order_id, "amount": invoice.amount,
        "payment_amount": payment_amount_usd, "payment_amount_usd": payment_amount_usd,
        "merchant_amount": _usd(paid - commission), "commission": _usd(commission), "is_final": status in FINAL,
        "status": status, "from": "TX7w3cU9Zm3ARvWBV2NQd5kJ2pRk3e5f1q" if paid else None,
        "wallet_address_uuid": None, "network": "tron", "currency": invoice.currency, "payer_currency": "USDT",
        "payer_amount": payment_amount_usd, "payer_amount_exchange_rate": "1.00000000",
        "additional_data": invoice.additional_data, "transfer_id": None,
        "txid": hashlib.sha256(f"{invoice.uuid}:{payment_amount_usd}".encode()).hexdigest() if paid else None,
    }  # fmt: skip
    data.update(extra)
    return data


async def notify(
    app: web.Application | TestServer,
    uuid: str,
    status: str,
    payment_amount_usd: str | None = None,
    *,
    url: str | None = None,
    escape_unicode: bool = False,
    **extra: Any,
) -> int:
    """Post a signed webhook for an invoice (to ``url`` or its ``url_callback``), set the
    invoice's status, and return the HTTP status the receiver answered. ``app`` is the fake's
    application or the test server running it."""
    state = (app.app if isinstance(app, TestServer) else app)[CRYPTOMUS]
    invoice = state.invoices[uuid]
    target = url or invoice.url_callback
    if not target:
        raise ValueError(f"invoice {uuid} has no url_callback and no url was given")
    invoice.status = status
    body = signed_body(
        state.api_key, webhook_data(invoice, status, payment_amount_usd, **extra), escape_unicode=escape_unicode
    )
    headers = {"Content-Type": "application/json", "User-Agent": "Cryptomus webhook (izzi fake)"}
    async with aiohttp.ClientSession() as session, session.post(target, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status
