"""Signing in to the dashboard and out of it.

``POST /dashboard/login`` takes the API key (the user's view) or the admin token (the
operator's) in its form body, never in a URL. A wrong one counts toward blocking the IP, as
on the API. The sign-in form's CSRF token is a double submit: a random value in a cookie of
its own and in the form, which must be equal.
"""

from __future__ import annotations

import hmac
import secrets
import time

from aiohttp import web

from izzi_proxy.dashboard.pages import (
    HOME,
    SESSION_COOKIE,
    SIGNIN,
    SIGNIN_COOKIE,
    drop_cookie,
    field,
    page,
    render,
    set_cookie,
)
from izzi_proxy.dashboard.sessions import OPERATOR, USER
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.keys import CLIENT_IP, CONFIG, LEDGER, SESSIONS
from izzi_proxy.ledger import KEY_PREFIX, ApiKey, mask
from izzi_proxy.middleware.ip_block import blocked_error, count_failed_auth
from izzi_proxy.routes import endpoint

SIGNIN_TTL_S = 3600  # the sign-in form's token


@endpoint(OPENAI_CHAT, session=True)
async def root(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSIONS].read(request.cookies.get(SESSION_COOKIE), time.time())
    raise web.HTTPSeeOther(HOME[session.role] if session else SIGNIN)


def _form(request: web.Request, status: int = 200, error: str | None = None) -> web.Response:
    token = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "login.html", status, csrf=token, error=error,
                      operator=request.app[SESSIONS].operator_enabled)  # fmt: skip
    set_cookie(response, request, SIGNIN_COOKIE, token, SIGNIN_TTL_S)
    return response


@endpoint(OPENAI_CHAT, session=True)
async def signin_form(request: web.Request) -> web.StreamResponse:
    return _form(request)


@endpoint(OPENAI_CHAT, session=True)
async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    cookie, token = request.cookies.get(SIGNIN_COOKIE), field(form, "csrf")
    if not cookie or not token or not hmac.compare_digest(cookie, token):
        return _form(request, 403, "The sign-in form had expired; it is fresh now: try again.")
    secret = field(form, "secret")
    if secret is None:
        return _form(request, 400, "Enter your API key (izzi-…) or, for the operator's view, the admin token.")
    sessions, now = request.app[SESSIONS], time.time()
    key: ApiKey | None = None
    if secret.startswith(KEY_PREFIX) and secret.isascii():
        key = await request.app[LEDGER].find_key(secret)
    if key is None and not sessions.is_admin_token(secret):
        if blocked := await count_failed_auth(request, request.app[CONFIG]):
            return _form(request, 403, blocked_error(request[CLIENT_IP], blocked).message)
        return _form(request, 401, f"That is neither a live API key nor the admin token: {mask(secret)}")
    role = USER if key is not None else OPERATOR
    response = web.HTTPSeeOther(HOME[role])
    set_cookie(response, request, SESSION_COOKIE, sessions.issue(role, now, key), sessions.lifetime_s)
    drop_cookie(response, SIGNIN_COOKIE)
    raise response


@page(None)
async def signout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther(SIGNIN)
    drop_cookie(response, SESSION_COOKIE)
    raise response
