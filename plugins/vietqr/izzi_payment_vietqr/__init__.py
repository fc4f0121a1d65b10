"""Top-ups paid by bank transfer in Vietnam: a VietQR code to scan, confirmed by SePay's webhook.

The invoice is the operator's own bank account and a NAPAS VietQR payload carrying the
amount in VND and the top-up's reference as the transfer's description; no service is
called to make it. When money arrives, the bank-notification service (SePay) posts the
transaction with ``Authorization: Apikey <key>``; the core finds the reference in the
description. Options in the provider's table::

    [payments.providers.bank]
    kind = "vietqr"
    bank_bin = "970436"             # the bank's NAPAS BIN (970436 is Vietcombank)
    account_number = "0123499999"
    account_name = "CONG TY IZZI"   # shown to the user
    bank_name = "Vietcombank"       # optional, shown to the user
    vnd_per_credit = 26000          # the rate: VND for 1 credit (1 USD)
    webhook_key = "env:SEPAY_WEBHOOK_KEY"
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Self

from izzi_payment_vietqr.emvco import ACCOUNT_FORMAT, BIN_FORMAT, crc_ok, parse, vietqr_payload
from izzi_proxy.payments import Confirmation, Invoice, PaymentConfig, TopUpRequest, WebhookRejected

if TYPE_CHECKING:
    from aiohttp import ClientSession

__all__ = ["VietQRProvider", "crc_ok", "parse", "vietqr_payload"]

MICRO = 1_000_000  # µcr in a credit
OPTIONS = frozenset({"bank_bin", "account_number", "account_name", "bank_name", "vnd_per_credit", "webhook_key"})


class VietQRProvider:
    kind: ClassVar[str] = "vietqr"

    def __init__(
        self, *, bank_bin: str, account_number: str, account_name: str, bank_name: str | None,
        vnd_per_credit: Fraction, webhook_key: str,
    ) -> None:  # fmt: skip
        self.bank_bin = bank_bin
        self.account_number = account_number
        self.account_name = account_name
        self.bank_name = bank_name
        self.vnd_per_credit = vnd_per_credit  # exact: the decimal the operator wrote
        self._webhook_key = webhook_key.encode()

    @classmethod
    def from_config(cls, config: PaymentConfig, session: ClientSession) -> Self:
        bank_bin = config.option("bank_bin", str, required=True)
        if not BIN_FORMAT.fullmatch(bank_bin):
            raise config.error(
                "bank_bin", f"must be the bank's 6-digit NAPAS BIN (970436 for Vietcombank), got {bank_bin!r}"
            )
        account_number = config.option("account_number", str, required=True)
        if not ACCOUNT_FORMAT.fullmatch(account_number):
            raise config.error("account_number", f"must be 1 to 19 digits or letters, got {account_number!r}")
        account_name = config.option("account_name", str, required=True).strip()
        if not account_name:
            raise config.error("account_name", "must not be empty")
        bank_name = (config.option("bank_name", str) or "").strip() or None
        rate = config.option("vnd_per_credit", (int, float), required=True)
        if unknown := sorted(set(config.options) - OPTIONS):
            raise config.error(unknown[0], f"unknown option; known: {', '.join(sorted(OPTIONS))}")
        if not math.isfinite(rate) or rate <= 0:
            raise config.error("vnd_per_credit", f"must be a number of VND above 0, got {rate!r}")
        return cls(
            bank_bin=bank_bin, account_number=account_number, account_name=account_name, bank_name=bank_name,
            vnd_per_credit=Fraction(str(rate)), webhook_key=config.secret("webhook_key"),
        )  # fmt: skip

    def vnd_for(self, credits: int) -> int:
        """What ``credits`` µcr cost in VND, rounded up to the dong."""
        return math.ceil(credits * self.vnd_per_credit / MICRO)

    def credits_for(self, vnd: int) -> int:
        """The µcr that ``vnd`` buys, rounded down."""
        return math.floor(vnd * MICRO / self.vnd_per_credit)

    async def create(self, request: TopUpRequest) -> Invoice:
        vnd = self.vnd_for(request.credits)
        details: dict[str, Any] = {"bank_bin": self.bank_bin}
        if self.bank_name:
            details["bank_name"] = self.bank_name
        details |= {
            "account_number": self.account_number,
            "account_name": self.account_name,
            "transfer_content": request.reference,
            "qr_payload": vietqr_payload(self.bank_bin, self.account_number, vnd, request.reference),
        }
        return Invoice(currency="VND", amount=str(vnd), details=details)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Confirmation]:
        """A SePay transaction notification: money in is one ``paid`` confirmation, money out none."""
        auth = next((value for key, value in headers.items() if key.lower() == "authorization"), "")
        scheme, _, presented = auth.strip().partition(" ")
        if scheme.lower() != "apikey" or not hmac.compare_digest(presented.strip().encode(), self._webhook_key):
            raise WebhookRejected("no or a wrong API key in Authorization (expected: Apikey <key>)", 401)
        try:
            data = json.loads(body)
        except ValueError as e:
            raise WebhookRejected(f"the body is not JSON: {e}", 400) from None
        if not isinstance(data, dict):
            raise WebhookRejected("the body is not a JSON object", 400)
        if data.get("transferType") == "out":
            return []
        if data.get("transferType") != "in":
            raise WebhookRejected(f"transferType must be 'in' or 'out', got {data.get('transferType')!r}", 400)
        event, amount, content = data.get("id"), data.get("transferAmount"), data.get("content")
        if isinstance(event, bool) or not isinstance(event, (int, str)) or event == "":
            raise WebhookRejected("id (the transaction's) is missing", 400)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise WebhookRejected(f"transferAmount must be a positive whole number of VND, got {amount!r}", 400)
        if not isinstance(content, str):
            raise WebhookRejected("content (the transfer's description) is missing", 400)
        words = (data.get(key) for key in ("description", "code"))
        gateway, bank_ref = (data.get(key) for key in ("gateway", "referenceCode"))
        return [
            Confirmation(
                event_id=f"{gateway or 'bank'}:{event}",
                status="paid",
                text=" ".join([content, *(w for w in words if isinstance(w, str) and w)]),
                credits=self.credits_for(amount),
                amount=f"{amount} VND",
                detail=" ".join(str(w) for w in (gateway, bank_ref) if w) or None,
                raw=data,
            )
        ]

    async def aclose(self) -> None:
        pass
