"""Authenticate every route not declared public: ``Authorization: Bearer izzi-…``,
``x-api-key`` or ``x-goog-api-key``; on the Gemini API's routes also ``?key=`` (as Google
allows; the request log writes the path without its query, so the key is never logged).

The presented key is hashed and looked up by its hash; the stored hash is compared in
constant time (in the ledger). Errors show only a masked form of the key.

Admin routes (``/admin/``) take the admin token instead, read from ``IZZI_ADMIN_TOKEN``
when the app is built and compared in constant time; without it they are refused. The
dashboard's routes are signed in by their session cookie (``dashboard/sessions.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.errors import AuthenticationFailed
from izzi_proxy.keys import API_KEY, LEDGER
from izzi_proxy.ledger import KEY_PREFIX, mask
from izzi_proxy.routes import route_info


def presented_key(request: web.Request, query: bool = False) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    found = request.headers.get("x-api-key") or request.headers.get("x-goog-api-key")
    if found is None and query:
        found = request.query.get("key")
    return found or None


ADMIN_TOKEN_ENV = "IZZI_ADMIN_TOKEN"
MIN_ADMIN_TOKEN = 16


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def admin_token_digest(env: Mapping[str, str] = os.environ) -> bytes | None:
    """The admin token's SHA-256 (None: the admin surfaces are off)."""
    token = env.get(ADMIN_TOKEN_ENV) or None
    return _digest(token) if token and len(token) >= MIN_ADMIN_TOKEN else None


def make_auth(config: Config) -> Middleware:
    admin_digest = admin_token_digest()

    def check_admin(request: web.Request) -> None:
        if admin_digest is None:
            raise AuthenticationFailed(
                f"The admin API is off: start the gateway with {ADMIN_TOKEN_ENV} set "
                f"(at least {MIN_ADMIN_TOKEN} characters)"
            )
        secret = presented_key(request)
        if secret is None:
            raise AuthenticationFailed("Missing admin token: send it as 'Authorization: Bearer …'")
        if not hmac.compare_digest(_digest(secret), admin_digest):
            raise AuthenticationFailed(f"Invalid admin token: {mask(secret)}")

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        info = route_info(request)
        if info is None or info.public:
            return await handler(request)  # health checks, and aiohttp's 404 / 405
        if info.admin:
            check_admin(request)
            return await handler(request)
        if info.session:  # the dashboard's pages check their session cookie themselves
            return await handler(request)
        secret = presented_key(request, info.key_in_query)
        if secret is None:
            raise AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer izzi-…', 'x-api-key' or 'x-goog-api-key'"
            )
        if not secret.isascii():  # keys are ASCII; the rest is not even shown
            raise AuthenticationFailed("Invalid API key: it holds characters no key has")
        key = await request.app[LEDGER].find_key(secret) if secret.startswith(KEY_PREFIX) else None
        if key is None:
            raise AuthenticationFailed(f"Invalid API key: {mask(secret)}")
        request[API_KEY] = key
        return await handler(request)

    return auth
