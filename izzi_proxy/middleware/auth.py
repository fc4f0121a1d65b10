"""Authenticate every route not declared public: ``Authorization: Bearer izzi-…`` or ``x-api-key``.

The presented key is hashed and looked up by its hash; the stored hash is compared in
constant time (in the ledger). Errors show only a masked form of the key.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.errors import AuthenticationFailed
from izzi_proxy.keys import API_KEY, LEDGER
from izzi_proxy.ledger import KEY_PREFIX, mask
from izzi_proxy.routes import route_info


def presented_key(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


def make_auth(config: Config) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = route_info(request)
        if info is None or info.public:
            return await handler(request)  # health checks, and aiohttp's 404 / 405
        secret = presented_key(request)
        if secret is None:
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer izzi-…' or 'x-api-key'")
        if not secret.isascii():  # keys are ASCII; the rest is not even shown
            raise AuthenticationFailed("Invalid API key: it holds characters no key has")
        key = await request.app[LEDGER].find_key(secret) if secret.startswith(KEY_PREFIX) else None
        if key is None:
            raise AuthenticationFailed(f"Invalid API key: {mask(secret)}")
        request[API_KEY] = key
        return await handler(request)

    return auth
