"""What an operator does to accounts, keys and credits, checked in one place for every
surface that offers it: the admin API (JSON bodies) and the dashboard (forms).

Each operation takes plain values and raises ``InvalidRequest`` (naming the field),
``NotFound`` or ``Conflict``; the surfaces only read their own input format.
"""

from __future__ import annotations

import time
from typing import Any

from izzi_proxy.access import override_value
from izzi_proxy.catalog import TIERS
from izzi_proxy.config import Config
from izzi_proxy.errors import Conflict, InvalidRequest, NotFound
from izzi_proxy.ledger import Account, AlreadyExists, ApiKey, Balance, CreditEntry, IdempotencyConflict, Ledger
from izzi_proxy.pricing import AmountError, percent_of, to_micro

MAX_IDEMPOTENCY_KEY = 255


async def account(ledger: Ledger, name: str) -> Account:
    found = await ledger.get_account(name)
    if found is None:
        raise NotFound(f"No account named {name!r}", param="name")
    return found


def plan(config: Config, name: str | None) -> str:
    plans = config.limits.plans
    name = name or config.limits.default_plan
    if name not in plans:
        raise InvalidRequest(f"No plan {name!r}; plans: {', '.join(plans)}", param="plan")
    return name


def overrides(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("'overrides' must be an object", param="overrides")
    try:
        return {name: override_value(name, v) for name, v in value.items()}
    except ValueError as err:
        raise InvalidRequest(f"overrides: {err}", param="overrides") from None


async def create_account(ledger: Ledger, config: Config, name: str, plan_id: str | None, extra: Any) -> Account:
    name = name.strip()
    if not name:
        raise InvalidRequest("'name' cannot be empty", param="name")
    try:
        return await ledger.create_account(name, plan(config, plan_id), overrides(extra))
    except AlreadyExists:
        raise Conflict(f"An account named {name!r} exists", param="name") from None


async def update_account(
    ledger: Ledger, config: Config, name: str, plan_id: str | None, extra: Any = None, *, replace: bool = False
) -> Account:
    """A new plan (None: unchanged) and, with ``replace``, ``extra`` as its overrides."""
    found = await account(ledger, name)
    await ledger.update_account(
        found.id, plan(config, plan_id) if plan_id is not None else None, overrides(extra) if replace else None
    )
    return await account(ledger, found.name)


async def create_key(
    ledger: Ledger, config: Config, account_name: str, name: str, expires_days: float | None, models: list | None
) -> tuple[ApiKey, str]:
    """A new key of the account, and its secret (shown this once)."""
    owner = await account(ledger, account_name)
    if expires_days is not None and not expires_days > 0:
        raise InvalidRequest("'expires_days' must be more than 0", param="expires_days")
    if models is not None:
        known = {e.id for e in config.catalog} | {f"tier:{t}" for t in TIERS}
        if bad := [m for m in models if m not in known]:
            raise InvalidRequest(f"models: {bad[0]!r} is neither a catalog model id nor tier:<tier>", param="models")
    expires_at = time.time() + expires_days * 86400 if expires_days else None
    return await ledger.create_key(owner.id, name, expires_at, models)


async def revoke_key(ledger: Ledger, key_id: str) -> int:
    if not key_id.isdigit() or not await ledger.revoke_key(int(key_id)):
        raise NotFound(f"No live key with id {key_id!r}")
    return int(key_id)


async def top_up(
    ledger: Ledger,
    account_name: str,
    amount: str | int,
    bonus_pct: str | int = "0",
    note: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[CreditEntry, bool, Balance]:
    """Credit the account (a repeated idempotency key credits nothing more): the entry,
    whether it is new, and the balance after."""
    owner = await account(ledger, account_name)
    try:
        micro = to_micro(amount)
    except AmountError as err:
        raise InvalidRequest(f"amount: {err}", param="amount") from None
    if micro <= 0:
        raise InvalidRequest("'amount' must be more than 0", param="amount")
    try:
        bonus = percent_of(micro, bonus_pct)
    except AmountError as err:
        raise InvalidRequest(f"bonus_pct: {err}", param="bonus_pct") from None
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"An idempotency key takes 1 to {MAX_IDEMPOTENCY_KEY} characters")
    try:
        entry, new = await ledger.add_credits(owner.id, micro, bonus=bonus, note=note, idempotency_key=idempotency_key)
    except IdempotencyConflict as err:
        raise Conflict(f"{err}; use a new Idempotency-Key for a new top-up") from None
    return entry, new, await ledger.balance_of(owner.id)
