"""One usage record for every metered request, however its answer ended.

The record is created before the handler runs and finished in ``finally``, so a client
that hangs up mid-stream (a write error in aiohttp's default mode, a cancelled handler with
``handler_cancellation``) or a failing upstream still leaves its record. A generation's
hold (placed by ``handlers.generate``, where the model and ``max_tokens`` are known) is
settled here, in a task that cancelling the request cannot stop, in the same transaction
that writes the record; other records go to the usage writer. A settled plain answer
(or error) says ``x-izzi-cost`` and ``x-izzi-balance``; a stream carries its cost in its
final usage object (``relay.Meter``).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.errors import GatewayError
from izzi_proxy.keys import API_KEY, BILL, BILLING, COST_HEADERS, RECORD, REQUEST_ID, USAGE_WRITER
from izzi_proxy.ledger import UsageRecord
from izzi_proxy.pricing import credits
from izzi_proxy.routes import route_info


def make_metering(config: Config) -> Middleware:
    @web.middleware
    async def metering(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = route_info(request)
        if info is None or not info.metered:
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
            if not record.status:  # the relay sets it once the answer's last frame is out
                record.status, record.outcome = 499, "client_closed"
            raise
        except BaseException:
            record.status, record.outcome, record.error_type = 500, "error", "server_error"
            raise
        finally:
            record.duration_ms = (time.monotonic() - started) * 1000
            bill = request.get(BILL)
            if bill is None:
                request.app[USAGE_WRITER].submit(record)
            else:
                await asyncio.shield(request.app[BILLING].finish_soon(bill, record))
                if bill.settled is not None:
                    request[COST_HEADERS] = {
                        "x-izzi-cost": credits(bill.settled.charged),
                        "x-izzi-balance": credits(bill.settled.balance),
                    }

    return metering


async def add_cost_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: a settled answer's cost and the balance after it."""
    if headers := request.get(COST_HEADERS):
        response.headers.update(headers)
