"""A cap on the requests this process serves at once (``[server] max_requests_in_flight``),
whoever sends them: past it, 503 ``service_unavailable`` with ``Retry-After``, at once and
before any key lookup. A stream counts until its last byte. Health checks are not counted.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.errors import Overloaded
from izzi_proxy.keys import LOAD
from izzi_proxy.routes import route_info

RETRY_AFTER_S = 1.0


def make_capacity(config: Config) -> Middleware:
    cap = config.server.max_requests_in_flight

    @web.middleware
    async def capacity(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = route_info(request)
        if info is None or info.public:
            return await handler(request)
        load = request.app[LOAD]
        if load.requests >= cap:
            raise Overloaded(f"The gateway is serving {cap} requests, its limit; try again shortly",
                             retry_after_s=RETRY_AFTER_S)  # fmt: skip
        load.requests += 1
        try:
            return await handler(request)
        finally:
            load.requests -= 1

    return capacity
