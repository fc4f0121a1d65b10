"""Write one usage record for every metered request, however its answer ended.

The record is created before the handler runs and written in ``finally``, shielded from
cancellation, so a client that hangs up mid-stream (a write error in aiohttp's default
mode, a cancelled handler with ``handler_cancellation``) or a failing upstream still
leaves its record. Writes still running when the app stops are awaited before the ledger
closes (``app.py``). Holds and settlement of credits join here with the billing issue.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.errors import GatewayError
from izzi_proxy.keys import API_KEY, LEDGER, PENDING_WRITES, RECORD, REQUEST_ID
from izzi_proxy.ledger import Ledger, UsageRecord

log = logging.getLogger("izzi.metering")


def make_metering(config: Config) -> Middleware:
    @web.middleware
    async def metering(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not getattr(request.match_info.handler, "metered", False):
            return await handler(request)
        key = request[API_KEY]
        record = UsageRecord(
            request_id=request[REQUEST_ID],
            endpoint=request.match_info.route.resource.canonical,
            started_at=time.time(),
            key_id=key.id,
            account_id=key.account_id,
        )
        request[RECORD] = record
        started = time.monotonic()
        try:
            response = await handler(request)
            record.status = response.status
            return response
        except GatewayError as err:
            record.status, record.outcome, record.error_type = err.status, "error", err.type
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            record.status, record.outcome = record.status or 499, "client_closed"
            raise
        except BaseException:
            record.status, record.outcome, record.error_type = 500, "error", "server_error"
            raise
        finally:
            record.duration_ms = (time.monotonic() - started) * 1000
            write = asyncio.ensure_future(_write(request.app[LEDGER], record))
            pending = request.app[PENDING_WRITES]
            pending.add(write)
            write.add_done_callback(pending.discard)
            await asyncio.shield(write)

    return metering


async def _write(ledger: Ledger, record: UsageRecord) -> None:
    try:
        await ledger.record_usage(record)
    except Exception:
        log.exception("request %s: usage record could not be written: %r", record.request_id, record)
