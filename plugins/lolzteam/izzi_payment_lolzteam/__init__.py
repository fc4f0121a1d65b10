"""Top-ups paid from a Lolzteam marketplace balance.

The user sends the amount to the operator's Lolzteam account with the payment's reference
as the transfer's comment; the operator, seeing it arrive, records it (``izzi-proxy payments
record <name> --transaction ID --amount N --reference IZ…``, or ``POST
/admin/payments/<name>/transactions``) and the credits follow through the same flow as every
other provider: once per transaction id, matched by the reference, kept as unmatched when
the reference is missing or wrong.

Lolzteam has no documented notification for an incoming transfer to a user's balance, so
this provider reads no webhook.

    [payments.providers.lolzteam]
    kind = "lolzteam"
    pay_to = "https://lolz.live/members/123456/"   # where users send the transfer (shown to them)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar, Self
from urllib.parse import urlsplit

from aiohttp import ClientSession

from izzi_proxy.payments import Confirmation, Invoice, PaymentConfig, TopUpRequest, WebhookRejected

CENTS = 10_000  # µcr per US cent


class LolzteamProvider:
    kind: ClassVar[str] = "lolzteam"

    def __init__(self, name: str, pay_to: str) -> None:
        self.name, self.pay_to = name, pay_to

    @classmethod
    def from_config(cls, config: PaymentConfig, session: ClientSession) -> Self:
        pay_to = config.option("pay_to", str, required=True).strip()
        if urlsplit(pay_to).scheme not in ("http", "https"):
            raise config.error("pay_to", f"the URL of the Lolzteam profile users send the transfer to, got {pay_to!r}")
        if unknown := sorted(set(config.options) - {"pay_to"}):
            raise config.error(unknown[0], "unknown option; known: pay_to")
        return cls(config.name, pay_to)

    async def create(self, request: TopUpRequest) -> Invoice:
        cents = math.ceil(request.credits / CENTS)
        amount = f"{cents // 100}.{cents % 100:02d}"
        return Invoice(
            currency="USD",
            amount=amount,
            pay_url=self.pay_to,
            details={
                "transfer_to": self.pay_to,
                "comment": request.reference,
                "how": f"Send {amount} USD from your Lolzteam balance to {self.pay_to} with the comment "
                f"{request.reference}. The credits are added once the transfer is recorded.",
            },
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Confirmation]:
        raise WebhookRejected(
            f"Lolzteam transfers are recorded by the operator (POST /admin/payments/{self.name}/transactions); "
            "this provider reads no notifications",
            400,
        )

    async def aclose(self) -> None:
        return None
