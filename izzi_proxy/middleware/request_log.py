"""Outermost: give every request an id, and log one line per answer once it has ended.

The id goes back in ``x-request-id`` on every answer (set in ``on_response_prepare``, so
streams carry it too). Keys never appear in the log: only the key's visible prefix. The line
carries the request's fields (``fields``: account, key prefix, model asked and served,
upstream, status, outcome, tokens, cost, latency, time to first token), which the JSON log
format writes as keys. Probes (``/healthz``, ``/readyz``) are logged at DEBUG only.
"""

from __future__ import annotations

import logging
import random
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.keys import API_KEY, METRICS, RECORD, REQUEST_ID
from izzi_proxy.ledger import UsageRecord
from izzi_proxy.pricing import credits

log = logging.getLogger("izzi.access")
PROBES = frozenset({"/healthz", "/readyz"})


def new_request_id() -> str:
    """Unique, not secret: no system call per request (``secrets`` would read urandom)."""
    return f"req_{random.getrandbits(96):024x}"


def make_request_log(config: Config) -> Middleware:
    @web.middleware
    async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[REQUEST_ID] = new_request_id()
        started = time.monotonic()
        status = 0
        try:
            response = await handler(request)
            status = response.status
            return response
        except BaseException:
            # The client went away or the server is stopping; a metered answer that was
            # already complete keeps its status.
            record = request.get(RECORD)
            status = record.status if record is not None and record.status else 499
            raise
        finally:
            elapsed = time.monotonic() - started
            level = logging.DEBUG if request.path in PROBES else logging.INFO
            if log.isEnabledFor(level):
                _log(level, request, status, elapsed * 1000)
            try:
                request.app[METRICS].answered(request, status, elapsed)
            except Exception:  # a metric must never cost an answer
                log.exception("request %s: metrics failed", request[REQUEST_ID])

    return request_log


class AccessFields:
    """An access line's fields, made into a dict only when a formatter asks (``as_dict``: the
    JSON format); the text line reads the few it shows directly."""

    __slots__ = ("key", "latency_ms", "method", "path", "record", "request_id", "status")

    def __init__(self, request: web.Request, status: int, latency_ms: float) -> None:
        self.key, self.record = request.get(API_KEY), request.get(RECORD)
        self.request_id, self.method, self.path = request[REQUEST_ID], request.method, request.path
        self.status, self.latency_ms = status, latency_ms

    def as_dict(self) -> dict[str, object]:
        key, record = self.key, self.record
        fields: dict[str, object] = {
            "request_id": self.request_id, "method": self.method, "path": self.path, "status": self.status,
            "latency_ms": round(self.latency_ms, 1), "key_prefix": key.prefix if key else None,
            "account_id": key.account_id if key else None,
        }  # fmt: skip
        if isinstance(record, UsageRecord):
            usage = record.usage
            fields |= {
                "model_asked": record.requested_model, "model": record.model, "upstream": record.upstream,
                "upstream_model": record.upstream_model, "outcome": record.outcome,
                "error_type": record.error_type, "stream": record.stream, "attempts": record.attempts,
                "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 1),
                "input_tokens": usage.input_tokens if usage else None,
                "output_tokens": usage.output_tokens if usage else None,
                "cache_read_tokens": usage.cache_read_tokens if usage else None,
                "cache_write_tokens": usage.cache_write_tokens if usage else None,
                "cost": float(credits(record.cost)),
            }  # fmt: skip
        return fields


def _log(level: int, request: web.Request, status: int, latency_ms: float) -> None:
    fields = AccessFields(request, status, latency_ms)
    key, record = fields.key, fields.record
    usage = record.usage if isinstance(record, UsageRecord) else None
    log.log(
        level,
        "%s %s %s %d %.1fms key=%s model=%s upstream=%s outcome=%s in=%s out=%s cost=%s",
        fields.request_id, fields.method, fields.path, status, latency_ms, key.prefix if key else "-",
        getattr(record, "model", None) or "-", getattr(record, "upstream", None) or "-",
        getattr(record, "outcome", None) or "-", usage.input_tokens if usage else "-",
        usage.output_tokens if usage else "-", credits(record.cost) if isinstance(record, UsageRecord) else "-",
        extra={"fields": fields},
    )  # fmt: skip


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request id on every answer, streamed or not."""
    if (request_id := request.get(REQUEST_ID)) is not None:
        response.headers["x-request-id"] = request_id
