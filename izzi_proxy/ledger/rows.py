"""How the ledger's rows map to its objects, the same on every backend."""

from __future__ import annotations

from typing import Any

import orjson

from izzi_proxy.canonical import Usage
from izzi_proxy.ledger import Account, ApiKey, CreditEntry, OpenHold, Payment, PaymentEvent, UsageRecord

KEY_COLUMNS = """k.id, k.account_id, a.name, a.plan, k.name, k.prefix, k.created_at,
                  k.expires_at, k.revoked_at, a.overrides, k.allow, k.key_hash"""
ACCOUNT_COLUMNS = "id, name, plan, created_at, overrides"


def json_of(value: str | None) -> Any:
    return orjson.loads(value) if value else None


def key_of(row: tuple) -> ApiKey:
    allow = json_of(row[10])
    return ApiKey(*row[:9], overrides=json_of(row[9]) or {}, allow=tuple(allow) if allow is not None else None)


def account_of(row: tuple) -> Account:
    return Account(*row[:4], overrides=json_of(row[4]) or {})


USAGE_COLUMNS = (
    "request_id", "endpoint", "key_id", "account_id", "model", "upstream", "upstream_model",
    "requested_model", "stream", "status", "outcome", "error_type", "started_at", "duration_ms",
    "usage_known", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "extra", "usage_source", "cost", "unbilled", "held", "ttft_ms", "attempts",
)  # fmt: skip
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def usage_row(record: UsageRecord) -> tuple:
    u = record.usage or Usage()
    return (
        record.request_id, record.endpoint, record.key_id, record.account_id, record.model,
        record.upstream, record.upstream_model, record.requested_model, record.stream, record.status,
        record.outcome, record.error_type, record.started_at, record.duration_ms, record.usage is not None,
        u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
        u.reasoning_tokens, orjson.dumps(record.extra).decode() if record.extra else None,
        record.usage_source, record.cost, record.unbilled, record.held, record.ttft_ms, record.attempts,
    )  # fmt: skip


def record_of(row: dict[str, Any]) -> UsageRecord:
    usage = Usage(*(row.pop(name) for name in USAGE_FIELDS))
    known, extra = row.pop("usage_known"), row.pop("extra")
    row["stream"] = bool(row["stream"])
    return UsageRecord(**row, usage=usage if known else None, extra=orjson.loads(extra) if extra else {})


HOLD_COLUMNS = ("id, account_id, request_id, amount, cost, input_tokens, output_tokens, owner, created_at,"
                " expires_at, detail")  # fmt: skip


def hold_of(row: tuple) -> OpenHold:
    return OpenHold(*row[:10], detail=json_of(row[10]) or {})


CREDIT_COLUMNS = "id, account_id, amount, bonus, kind, note, idempotency_key, created_at"


def credit_of(row: tuple) -> CreditEntry:
    return CreditEntry(*row)


SUMMARY_COLUMNS = """COUNT(*), SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END), SUM(input_tokens),
    SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), SUM(cost),
    SUM(unbilled)"""


PAYMENT_COLUMNS = (
    "id, provider, account_id, state, credits, currency, amount, created_at, updated_at, expires_at, paid, bonus,"
    " credited, external_id, pay_url, paid_by, detail, details"
)
PAYMENT_CHANGES = frozenset({"account_id", "paid", "bonus", "credited", "paid_by", "detail", "external_id"})
EVENT_COLUMNS = "id, provider, event_id, payment_id, status, outcome, detail, received_at, body"


def payment_of(row: tuple) -> Payment:
    return Payment(*row[:17], details=orjson.loads(row[17]) if row[17] else {})


def payment_row(p: Payment) -> tuple:
    return (
        p.id, p.provider, p.account_id, p.state, p.credits, p.currency, p.amount, p.created_at, p.updated_at,
        p.expires_at, p.paid, p.bonus, p.credited, p.external_id, p.pay_url, p.paid_by, p.detail,
        orjson.dumps(p.details).decode() if p.details else None,
    )  # fmt: skip


def event_of(row: tuple) -> PaymentEvent:
    return PaymentEvent(*row[:8], body=orjson.loads(row[8]) if row[8] else {})
