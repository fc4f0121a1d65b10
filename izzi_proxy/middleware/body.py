"""Read a request's body before anything is spent on it: bounded in size
(``[server] max_body_mb``; a compressed body by what it decompresses to), in time
(``body_timeout_s``: 408 when it has not arrived), and, all requests together, in the bytes
held at once (``max_body_mb_in_flight``: 503 with Retry-After). A body still arriving when the process
starts stopping gets 503 with Retry-After at once (``stop_reading``). The rate limits come after,
so a body that never arrives holds no slot of its account's. The handler takes the bytes
from ``BODY``; routes whose method carries no body are let through.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError

from izzi_proxy.config import Config
from izzi_proxy.errors import BodyTimeout, InvalidRequest, Overloaded, RequestTooLarge
from izzi_proxy.keys import BODY, LOAD
from izzi_proxy.routes import route_info

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
RETRY_AFTER_S = 1.0


def make_body(config: Config) -> Middleware:
    limit, timeout_s = config.server.max_body_bytes, config.server.body_timeout_s
    cap = config.server.max_body_bytes_in_flight

    async def read(request: web.Request) -> bytes:
        try:
            if request.content.is_eof():  # all of it came with the headers: nothing to wait for
                raw = await request.read()
            else:
                waits = request.app[LOAD].body_waits
                async with asyncio.timeout(timeout_s) as deadline:
                    waits.add(deadline)
                    try:
                        raw = await request.read()
                    finally:
                        waits.discard(deadline)
        except TimeoutError:
            if request.app[LOAD].stopping:
                raise Overloaded("The gateway is restarting and took no more of this request's body; send it again",
                                 retry_after_s=RETRY_AFTER_S) from None  # fmt: skip
            raise BodyTimeout(f"The request body did not arrive within {timeout_s:g} s") from None
        except web.HTTPRequestEntityTooLarge:
            raise RequestTooLarge(f"Request body is over the limit of {limit} bytes") from None
        except (RequestPayloadError, HttpProcessingError):  # a body its Content-Encoding does not fit, or cut
            encoding = request.headers.get("Content-Encoding", "")
            what = f"valid {encoding} (its Content-Encoding)" if encoding else "complete"
            raise InvalidRequest(f"Request body is not {what}") from None
        if not raw:
            raise InvalidRequest("Request body is empty; send a JSON object")
        return raw

    @web.middleware
    async def body(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = route_info(request)
        if info is None or info.public or request.method not in _WITH_BODY:
            return await handler(request)
        size = request.content_length
        if size is not None and size > limit:
            raise RequestTooLarge(f"Request body is {size} bytes, over the limit of {limit} bytes")
        held = size if size is not None and not request.headers.get("Content-Encoding") else limit
        load = request.app[LOAD]
        if load.body_bytes + held > cap:
            raise Overloaded("The gateway holds as many request bodies as it may; try again shortly",
                             retry_after_s=RETRY_AFTER_S)  # fmt: skip
        load.body_bytes += held
        try:
            request[BODY] = await read(request)
            return await handler(request)
        finally:
            load.body_bytes -= held

    return body


async def stop_reading(app: web.Application) -> None:
    """``on_shutdown``: aiohttp's graceful shutdown reads nothing more from any connection, so
    a body still arriving would only time out: its request is answered 503 (try again) now."""
    load = app[LOAD]
    load.stopping = True
    now = asyncio.get_running_loop().time()
    for deadline in list(load.body_waits):
        deadline.reschedule(now)
