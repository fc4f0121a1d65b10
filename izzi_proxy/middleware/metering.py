"""One usage record for every metered request, however its answer ended.

The record is created before the handler runs and handed to the usage writer in
``finally`` (a plain call, nothing to cancel), so a client that hangs up mid-stream (a
write error in aiohttp's default mode, a cancelled handler with ``handler_cancellation``)
or a failing upstream still leaves its record, and no answer waits for the database.
Holds and settlement of credits join here with the billing issue.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.errors import GatewayError
from izzi_proxy.keys import API_KEY, RECORD, REQUEST_ID, USAGE_WRITER
from izzi_proxy.ledger import UsageRecord
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
            request.app[USAGE_WRITER].submit(record)

    return metering
