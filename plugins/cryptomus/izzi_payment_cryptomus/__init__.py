"""Cryptomus as a payment provider: a crypto invoice for each top-up, paid on Cryptomus's
page and confirmed by its signed webhook. Options in the provider's table::

    [payments.providers.crypto]
    kind = "cryptomus"
    merchant = { env = "CRYPTOMUS_MERCHANT" }   # the merchant uuid (or the uuid itself)
    api_key = "env:CRYPTOMUS_PAYMENT_KEY"       # the payment API key
    base_url = "https://api.cryptomus.com"
    lifetime_s = 3600                           # how long an invoice can be paid: 300..43200
    timeout_s = 15

An invoice is ``POST /v1/payment`` for the credits in USD, rounded up to the cent, with our
reference as ``order_id``. Webhook statuses map as:

=============================================================  ==========  ==================
Cryptomus status                                                ours        credits
=============================================================  ==========  ==================
``paid``, ``paid_over``                                         paid        payment_amount_usd
``wrong_amount``, ``fail``, ``system_fail``, ``cancel``         failed      none
``process``, ``check``, ``confirm_check``,                      pending     none
``wrong_amount_waiting``, ``locked``, ``refund_process``,
``refund_fail``, any other
``refund_paid``                                                 refunded    none
=============================================================  ==========  ==================
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import ClientSession

from izzi_payment_cryptomus.sign import php_json, sign
from izzi_proxy.config_reader import Secret
from izzi_proxy.payments import (
    Confirmation,
    Invoice,
    PaymentConfig,
    PaymentUnavailable,
    TopUpRequest,
    WebhookRejected,
)
from izzi_proxy.pricing import MICRO

__all__ = ["STATUSES", "CryptomusProvider"]

_OPTIONS = ("merchant", "api_key", "base_url", "lifetime_s", "timeout_s")
STATUSES = {
    **dict.fromkeys(("paid", "paid_over"), "paid"),
    **dict.fromkeys(("wrong_amount", "fail", "system_fail", "cancel"), "failed"),
    **dict.fromkeys(("process", "check", "confirm_check", "wrong_amount_waiting", "locked"), "pending"),
    # the money is back with the payer only once the refund is paid; one in progress or failed
    # changes nothing (and is kept among the payment's notifications)
    **dict.fromkeys(("refund_process", "refund_fail"), "pending"),
    "refund_paid": "refunded",
}


class CryptomusProvider:
    """Makes Cryptomus invoices through the merchant API and reads its webhooks."""

    kind: ClassVar[str] = "cryptomus"

    def __init__(
        self, merchant: str, api_key: str, base_url: str, lifetime_s: int, timeout_s: float, session: ClientSession
    ) -> None:
        self.merchant, self._api_key, self.base_url = merchant, api_key, base_url
        self.lifetime_s, self.timeout_s, self.session = lifetime_s, timeout_s, session

    def __repr__(self) -> str:
        return f"CryptomusProvider(merchant={self.merchant!r}, base_url={self.base_url!r})"

    @classmethod
    def from_config(cls, config: PaymentConfig, session: ClientSession) -> Self:
        for key in config.options:
            if key not in _OPTIONS:
                raise config.error(key, f"unknown option for cryptomus; known: {', '.join(_OPTIONS)}")
        if isinstance(config.options.get("merchant"), Secret):  # merchant = "env:NAME" works too
            merchant = config.secret("merchant").strip()
        else:
            merchant = config.option("merchant", str, required=True).strip()
        if not merchant:
            raise config.error("merchant", "is empty: give the merchant uuid from Cryptomus's settings")
        api_key = config.secret("api_key")
        base_url = config.option("base_url", str, "https://api.cryptomus.com").rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise config.error("base_url", f"expected an http(s) URL, got {base_url!r}")
        lifetime_s = config.option("lifetime_s", int, 3600)
        if not 300 <= lifetime_s <= 43200:
            raise config.error("lifetime_s", f"Cryptomus takes 300 to 43200 seconds, got {lifetime_s}")
        timeout_s = config.option("timeout_s", float, 15.0)
        if not timeout_s > 0:
            raise config.error("timeout_s", f"must be more than 0, got {timeout_s}")
        return cls(merchant, api_key, base_url, lifetime_s, timeout_s, session)

    async def create(self, request: TopUpRequest) -> Invoice:
        if request.credits <= 0:
            raise PaymentUnavailable(f"cryptomus: nothing to pay for {request.credits} µcr")
        cents = -(-request.credits // (MICRO // 100))
        amount = f"{cents // 100}.{cents % 100:02d}"
        payload: dict[str, Any] = {"amount": amount, "currency": "USD", "order_id": request.reference}
        if request.callback_url:
            payload["url_callback"] = request.callback_url
        payload["lifetime"] = self.lifetime_s
        payload["additional_data"] = f"izzi account {request.account}"[:255]
        result = await self._post("/v1/payment", payload)
        uuid, url, expired_at = result.get("uuid"), result.get("url"), result.get("expired_at")
        if not isinstance(uuid, str) or not isinstance(url, str):
            raise PaymentUnavailable("cryptomus: the invoice it made has no uuid or url")
        timed = isinstance(expired_at, int | float) and not isinstance(expired_at, bool)
        expires = float(expired_at) if timed else None
        status = result.get("payment_status") or result.get("status")
        details = {"invoice": uuid, "order_id": result.get("order_id", request.reference), "status": status}
        return Invoice("USD", str(result.get("amount") or amount), uuid, url, expires, details)

    async def _post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The ``result`` of a signed call; ``PaymentUnavailable`` for anything else."""
        body = php_json(payload)
        headers = {"merchant": self.merchant, "sign": sign(body, self._api_key), "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with self.session.post(self.base_url + path, data=body, headers=headers, timeout=timeout) as resp:
                status, raw = resp.status, await resp.read()
        except TimeoutError:
            raise PaymentUnavailable(f"cryptomus: no answer from {self.base_url} within {self.timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise PaymentUnavailable(f"cryptomus: cannot reach {self.base_url}: {exc}") from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise PaymentUnavailable(f"cryptomus: HTTP {status} with a body that is not a JSON object")
        if status != 200 or answer.get("state") != 0 or not isinstance(answer.get("result"), dict):
            raise PaymentUnavailable(f"cryptomus refused: HTTP {status}: {_reason(answer)}")
        return answer["result"]

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Confirmation]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise WebhookRejected("cryptomus webhook: the body is not JSON", 400) from None
        if not isinstance(data, dict):
            raise WebhookRejected("cryptomus webhook: the body is not a JSON object", 400)
        signed = {key: value for key, value in data.items() if key != "sign"}
        given = data.get("sign")
        if not isinstance(given, str) or not given:
            raise WebhookRejected("cryptomus webhook: no sign")
        try:
            expected = sign(php_json(signed), self._api_key)
        except ValueError:  # a lone surrogate (UnicodeEncodeError), as PHP refuses it
            raise WebhookRejected("cryptomus webhook: the body cannot be signed as PHP writes it", 400) from None
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise WebhookRejected("cryptomus webhook: wrong sign")
        uuid, status = data.get("uuid"), data.get("status")
        if not isinstance(uuid, str) or not uuid or not isinstance(status, str) or not status:
            raise WebhookRejected("cryptomus webhook: no uuid or status", 400)
        return [_confirmation(data, uuid, status)]

    async def aclose(self) -> None:
        """Nothing to close: the session is the gateway's."""


def _confirmation(data: dict[str, Any], uuid: str, status: str) -> Confirmation:
    ours = STATUSES.get(status, "pending")
    currency = data.get("currency") if isinstance(data.get("currency"), str) else None
    paid = data.get("payment_amount") or data.get("amount")
    amount = f"{paid} {currency}".strip() if isinstance(paid, str) and paid else None
    usd = data.get("payment_amount_usd")
    if usd is None and currency == "USD":  # the invoice's own currency is USD: payment_amount is USD
        usd = data.get("payment_amount")
    credits = None
    if ours == "paid":
        credits = _micro(usd)
        if credits is None:
            raise WebhookRejected(f"cryptomus webhook: {status} without a readable payment_amount_usd", 400)
    detail = f"cryptomus {status}" if status in STATUSES else f"cryptomus status {status!r} (unknown: kept pending)"
    if status in ("wrong_amount", "wrong_amount_waiting") and isinstance(usd, str):
        detail += f": paid {usd} USD of {data.get('amount')} {currency or ''}".rstrip()
    order_id = data.get("order_id")
    return Confirmation(
        event_id=f"{uuid}:{status}",
        status=ours,
        reference=order_id if isinstance(order_id, str) and order_id else None,
        external_id=uuid,
        credits=credits,
        amount=amount,
        detail=detail,
        raw=data,
    )


def _micro(usd: Any) -> int | None:
    """A decimal string of USD as µcr, rounded down (never more than was paid)."""
    if not isinstance(usd, str | int | float) or isinstance(usd, bool):
        return None
    try:
        value = Decimal(str(usd))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    return int((value * MICRO).to_integral_value(ROUND_DOWN))


def _reason(answer: Mapping[str, Any]) -> str:
    """Cryptomus's own words for a refusal: its message, or its per-field errors."""
    message = answer.get("message")
    errors = answer.get("errors")
    if isinstance(errors, dict) and errors:
        said = {key: ", ".join(map(str, v)) if isinstance(v, list) else str(v) for key, v in errors.items()}
        fields = "; ".join(f"{key}: {text}" for key, text in said.items())
        return f"{message}: {fields}" if isinstance(message, str) and message else fields
    return message if isinstance(message, str) and message else "no message"
