"""The payment provider contract and the entry-point registry that finds payment plugins.

A payment provider turns a started top-up into something the user can pay (an invoice
link, a bank-transfer QR code) and reads the confirmations that come back (a signed
webhook, a bank-transaction notification). Each is a separately installed package
registering a class in the ``izzi_proxy.payments`` entry-point group; the entry-point
name is the ``kind`` a ``[payments.providers.<name>]`` table of ``izzi.toml`` names.

The flow is the same for every provider (``flow.py``): a top-up gets a reference
(``IZ`` + 10 characters) → ``create`` makes the invoice → confirmations arrive at
``POST /payments/{name}/webhook`` and ``parse_webhook`` verifies and reads them → the
account is credited exactly once through the ledger's idempotent credits. A provider
never touches the ledger and keeps no state: it only speaks its service's format.

    PaymentProvider
      from_config(config, session) -> provider   validate options, read secrets; fail at start
      create(request) -> Invoice                 make what the user pays against
      parse_webhook(headers, body) -> [Confirmation]   verify (raise WebhookRejected) and read
      aclose()

Statuses a confirmation reports (the provider maps its own onto these): ``pending``,
``paid`` (``credits`` is what the customer actually paid), ``failed``, ``expired``,
``refunded``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from aiohttp import ClientSession

from izzi_proxy.config_reader import ConfigError, Secret

log = logging.getLogger("izzi.payments")

GROUP = "izzi_proxy.payments"
CONFIRMED = ("pending", "paid", "failed", "expired", "refunded")  # what a Confirmation may say


@dataclass(frozen=True, slots=True)
class PaymentConfig:
    """One ``[payments.providers.<name>]`` table: its plugin ``kind`` and the plugin's own options
    (values given as ``{ env = ... }`` resolved; secrets, ``"env:NAME"``, as ``Secret``)."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def error(self, key: str, problem: str) -> PaymentConfigError:
        return PaymentConfigError(self.source or "izzi.toml", f"payments.providers.{self.name}.{key}", problem)

    def secret(self, key: str) -> str:
        """A secret option (``key = "env:NAME"`` in the file, resolved at load); missing or
        unset stops the start with the variable to set."""
        value = self.options.get(key)
        if not isinstance(value, Secret):
            raise self.error(key, f'is required, from the environment: write {key} = "env:NAME"')
        if not value.value:
            raise self.error(key, f"set the environment variable {value.env}")
        return value.value

    def option(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        """A plain option of the plugin, type-checked."""
        value = self.options.get(key, default)
        if value is None:
            if required:
                raise self.error(key, "is required")
            return None
        if isinstance(value, Secret):
            raise self.error(key, "is not a secret: write the value itself")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(key, f"expected {getattr(kind, '__name__', kind)}, got {value!r}")
        return value


class PaymentConfigError(ConfigError):
    """A payment provider's options are wrong, worded as ``file: key: problem``."""


@dataclass(frozen=True, slots=True)
class TopUpRequest:
    """A started top-up, as a provider sees it."""

    reference: str  # ours, unique: goes into the invoice's order id or the transfer's purpose
    credits: int  # µcr the user asked for (1 credit = 1 USD)
    account: str  # the account's name (for the provider's own records, never a secret)
    callback_url: str | None  # where the provider posts its confirmations


@dataclass(frozen=True, slots=True)
class Invoice:
    """What a provider made for a top-up: where or how to pay, shown to the user."""

    currency: str  # of amount: "USD", "VND"
    amount: str  # what the user pays, as a decimal string in that currency
    external_id: str | None = None  # the provider's own id of the invoice
    pay_url: str | None = None  # a page where the user pays
    expires_at: float | None = None  # Unix seconds
    details: Mapping[str, Any] = field(default_factory=dict)  # shown as is: bank, account, QR payload…


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What one notification says about one payment."""

    event_id: str  # unique per notification: a repeat of it changes nothing
    status: str  # one of CONFIRMED
    reference: str | None = None  # our reference, when the provider carries it (an order id)
    text: str | None = None  # free text the reference may be found in (a transfer's description)
    external_id: str | None = None
    credits: int | None = None  # for "paid": µcr the customer actually paid
    amount: str | None = None  # what arrived, with its currency ("2277000 VND", "10.00 USD"), for the records
    detail: str | None = None  # the provider's own status name and anything worth showing
    raw: Mapping[str, Any] = field(default_factory=dict)


class WebhookRejected(Exception):
    """A notification that is not the provider's (no or a wrong signature or key) or cannot
    be read; ``status`` is the answer it gets (401 or 400). It changes nothing."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@runtime_checkable
class PaymentProvider(Protocol):
    kind: ClassVar[str]

    @classmethod
    def from_config(cls, config: PaymentConfig, session: ClientSession) -> Self: ...

    async def create(self, request: TopUpRequest) -> Invoice:
        """Make the invoice; raises ``PaymentUnavailable`` when the service refuses or is down."""

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Confirmation]:
        """Verify a notification and read it; raises ``WebhookRejected``."""

    async def aclose(self) -> None: ...


class PaymentUnavailable(Exception):
    """The provider's service refused to make an invoice or could not be reached."""


def installed_kinds() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_kind(config: PaymentConfig) -> type[PaymentProvider]:
    """The provider class of a table's kind; an unknown kind names the installed ones."""
    found = installed_kinds()
    if config.kind not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise config.error("kind", f"no payment plugin of kind {config.kind!r} is installed; installed: {installed}")
    return found[config.kind].load()
