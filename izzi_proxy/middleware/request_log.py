"""Outermost: give every request an id, and log one line per answer once it has ended.

The id goes back in ``x-request-id`` on every answer (set in ``on_response_prepare``, so
streams carry it too). Keys never appear in the log: only the key's visible prefix.
"""

from __future__ import annotations

import logging
import random
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.keys import API_KEY, RECORD, REQUEST_ID

log = logging.getLogger("izzi.access")


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
            if log.isEnabledFor(logging.INFO):
                key = request.get(API_KEY)
                record = request.get(RECORD)
                log.info(
                    "%s %s %s %d %.1fms key=%s model=%s upstream=%s outcome=%s",
                    request[REQUEST_ID], request.method, request.path, status,
                    (time.monotonic() - started) * 1000, key.prefix if key else "-",
                    getattr(record, "model", None) or "-", getattr(record, "upstream", None) or "-",
                    getattr(record, "outcome", None) or "-",
                )  # fmt: skip

    return request_log


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request id on every answer, streamed or not."""
    if (request_id := request.get(REQUEST_ID)) is not None:
        response.headers["x-request-id"] = request_id
