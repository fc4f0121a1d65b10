"""The web dashboard at ``/dashboard``: the operator's view behind the admin token, each
user's view behind their own API key.

Server-rendered pages (Jinja2 templates, charts drawn as inline SVG on the server) and one
small script that only adds conveniences (copy buttons, confirmations): every page and form
works without it, nothing is built, and the assets are the package's own files, never a CDN.
Sign-in, sessions and CSRF: ``sessions.py`` and ``pages.py``.

    GET  /dashboard                                 to the signed-in view, or the sign-in page
    GET  /dashboard/login   POST /dashboard/login   sign in (key or admin token in the form body)
    POST /dashboard/logout
    GET  /dashboard/me                              the user's view
    POST /dashboard/me/keys                         a new key of theirs, shown once
    POST /dashboard/me/keys/{id}/revoke
    POST /dashboard/me/topups   GET /dashboard/me/payments/{id}      a top-up, and how to pay it (payments.py)
    GET  /dashboard/admin                           traffic, spend, cache, upstreams, errors, holds
    GET  /dashboard/admin/accounts                  accounts; POST creates one
    GET  /dashboard/admin/accounts/{name}           one account; POST changes its plan and overrides
    POST /dashboard/admin/accounts/{name}/keys      a new key, shown once
    POST /dashboard/admin/accounts/{name}/keys/{id}/revoke
    POST /dashboard/admin/accounts/{name}/credits   a top-up (idempotent per form drawn)
    GET  /dashboard/admin/requests                  usage records (?account=, ?failed=1)
    GET  /dashboard/admin/payments[/{id}]           payments (?state=); POST …/{id}/assign (payments.py)
    POST /dashboard/admin/upstreams/{name}/reset
    GET  /dashboard/static/{file}
"""

from __future__ import annotations

from collections import deque
from importlib import resources

from aiohttp import web

from izzi_proxy.config import Config
from izzi_proxy.dashboard import operator, payments, signin, user
from izzi_proxy.dashboard.pages import ROOT
from izzi_proxy.dashboard.sessions import Sessions
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.keys import RECENT_ERRORS, SESSIONS
from izzi_proxy.middleware.auth import admin_token_digest
from izzi_proxy.routes import endpoint

RECENT_ERRORS_KEPT = 100
_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_STATIC = {  # name -> (bytes, type), read once
    f.name: (f.read_bytes(), _TYPES.get(f.name[f.name.rfind(".") :], "application/octet-stream"))
    for f in resources.files(__package__).joinpath("static").iterdir()
    if f.is_file()
}
_STATIC_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}


@endpoint(OPENAI_CHAT, public=True)
async def static(request: web.Request) -> web.StreamResponse:
    found = _STATIC.get(request.match_info["file"])
    if found is None:
        raise web.HTTPNotFound()
    return web.Response(body=found[0], content_type=found[1], headers=_STATIC_HEADERS)


def setup(app: web.Application, config: Config) -> None:
    app[RECENT_ERRORS] = deque(maxlen=RECENT_ERRORS_KEPT)
    if not config.server.dashboard:
        return
    app[SESSIONS] = Sessions.from_env(admin_token_digest(), config.server.dashboard_session_hours * 3600)
    r = app.router
    r.add_get(ROOT, signin.root)
    r.add_get(f"{ROOT}/login", signin.signin_form)
    r.add_post(f"{ROOT}/login", signin.signin)
    r.add_post(f"{ROOT}/logout", signin.signout)
    r.add_get(f"{ROOT}/me", user.me)
    r.add_post(f"{ROOT}/me/keys", user.create_key)
    r.add_post(f"{ROOT}/me/keys/{{key_id}}/revoke", user.revoke_key)
    r.add_get(f"{ROOT}/admin", operator.overview)
    r.add_get(f"{ROOT}/admin/accounts", operator.accounts)
    r.add_post(f"{ROOT}/admin/accounts", operator.create_account)
    r.add_get(f"{ROOT}/admin/accounts/{{name}}", operator.account)
    r.add_post(f"{ROOT}/admin/accounts/{{name}}", operator.update_account)
    r.add_post(f"{ROOT}/admin/accounts/{{name}}/keys", operator.create_key)
    r.add_post(f"{ROOT}/admin/accounts/{{name}}/keys/{{key_id}}/revoke", operator.revoke_key)
    r.add_post(f"{ROOT}/admin/accounts/{{name}}/credits", operator.top_up)
    r.add_get(f"{ROOT}/admin/requests", operator.records)
    r.add_post(f"{ROOT}/admin/upstreams/{{name}}/reset", operator.reset_upstream)
    r.add_get(f"{ROOT}/static/{{file}}", static)
    payments.add_routes(app)
