"""How a dashboard page is served: its template, its security headers, the session check
and the CSRF check on every form.

``@page(role)`` makes a handler a dashboard route: signed in by the session cookie (to the
sign-in page without one), its forms' CSRF token checked, and a gateway error it raises
drawn as an HTML page with the error's status. Errors raised before the page runs (a
blocked IP, a body over the limit) keep the JSON shape the rest of the gateway answers in.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from izzi_proxy.configure_api import public_url
from izzi_proxy.dashboard.sessions import OPERATOR, USER, Session
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.errors import GatewayError, InvalidRequest
from izzi_proxy.keys import DASHBOARD_SESSION, LEDGER, REQUEST_ID, SESSIONS
from izzi_proxy.ledger import ApiKey
from izzi_proxy.pricing import MICRO, credits
from izzi_proxy.routes import endpoint

SESSION_COOKIE = "izzi_session"
SIGNIN_COOKIE = "izzi_signin"
ROOT = "/dashboard"
SIGNIN = f"{ROOT}/login"
HOME = {OPERATOR: f"{ROOT}/admin", USER: f"{ROOT}/me"}
SECURITY_HEADERS = {
    # everything from this origin only, no inline script or style: a value that slipped past
    # escaping still cannot run
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch)) if epoch else "—"


def _money(micro: int) -> str:
    """µcr for a summary: credits to 2 decimals, more when it is under a cent."""
    return f"{micro / MICRO:,.2f}" if abs(micro) >= 10_000 or micro == 0 else credits(micro)


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("izzi_proxy.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(
    credits=credits,  # µcr, exact: "12.345678"
    money=_money,
    when=_when,
    count=lambda n: f"{int(n or 0):,}",
    pct=lambda share: f"{share * 100:.1f} %",
    seg=lambda text: quote(str(text), safe=""),  # one path segment: an account name with "/" stays one
)


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = request.get(DASHBOARD_SESSION)
    csrf = request.app[SESSIONS].csrf(session) if session is not None else context.pop("csrf", "")
    text = TEMPLATES.get_template(template).render(
        session=session, csrf=csrf, path=request.path, request_id=request.get(REQUEST_ID, ""), **context
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=SECURITY_HEADERS)  # fmt: skip


def secure(request: web.Request) -> bool:
    """Whether cookies may be marked Secure: the browser reaches us over HTTPS (directly or
    through a trusted proxy), or on a loopback host, which browsers treat as secure."""
    return public_url(request).startswith("https://") or request.url.host in LOOPBACK


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: float) -> None:
    response.set_cookie(name, value, max_age=int(max_age), path=ROOT, httponly=True, samesite="Strict",
                        secure=secure(request))  # fmt: skip


def drop_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=ROOT)


async def live_key(request: web.Request, session: Session) -> ApiKey | None:
    """A user session's key, while it is neither revoked nor expired."""
    if session.account_id is None:
        return None
    keys = await request.app[LEDGER].list_keys(session.account_id)
    return next((k for k in keys if k.id == session.key_id and k.live(time.time())), None)


def to_signin() -> web.HTTPSeeOther:
    return web.HTTPSeeOther(SIGNIN)


def page(role: str | None) -> Callable[[Callable[..., Awaitable[web.StreamResponse]]], Page]:
    """A page for ``role`` (None: anyone signed in). The handler gets the request, and a
    user's page also the user's key; a POST's form is checked for its CSRF token first."""

    def wrap(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Page:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            session = request.app[SESSIONS].read(request.cookies.get(SESSION_COOKIE), time.time())
            if session is None or (role is not None and session.role != role):
                raise to_signin()
            args: list[Any] = []
            if session.role == USER:
                key = await live_key(request, session)
                if key is None:  # revoked or expired since: this session ends with it
                    response = to_signin()
                    drop_cookie(response, SESSION_COOKIE)
                    raise response
                if role == USER:
                    args.append(key)
            request[DASHBOARD_SESSION] = session
            try:
                if request.method == "POST":
                    form = await request.post()
                    if not request.app[SESSIONS].csrf_ok(session, _text(form, "csrf")):
                        return render(request, "error.html", 403, title="This form has expired",
                                      message="Reload the page and send it again.")  # fmt: skip
                return await handler(request, *args)
            except GatewayError as err:
                return render(request, "error.html", err.status, title="That did not work", message=err.message)

        run.__izzi_page__ = role  # type: ignore[attr-defined]  # a test checks every session route has one
        return endpoint(OPENAI_CHAT, session=True)(run)

    return wrap


def _text(form: MultiDictProxy[Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def field(form: MultiDictProxy[Any], name: str) -> str | None:
    """A form field, stripped; None when absent or blank."""
    value = _text(form, name)
    return value.strip() or None if value is not None else None


def choice(request: web.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    """A query parameter that takes one of a few values; anything else is the default."""
    value = request.query.get(name, default)
    return value if value in allowed else default


def key_form(form: MultiDictProxy[Any]) -> tuple[str, float | None, list[str] | None]:
    """A new key's form: its name, its expiry in days (None: never), its allow-list (None:
    the plan decides)."""
    days = field(form, "expires_days")
    try:
        expires_days = float(days) if days is not None else None
    except ValueError:
        raise InvalidRequest(f"'Expires in' takes a number of days, got {days!r}", param="expires_days") from None
    models = [m for m in form.getall("models", []) if isinstance(m, str) and m] or None
    return field(form, "key_name") or "default", expires_days, models
