"""Route metadata: the client dialect a route speaks, and whether it is public, metered or
the operator's (admin).

Typed and failing closed. ``@endpoint(...)`` tags a handler with a :class:`RouteInfo`; a
handler registered without it still needs a key (``UNTAGGED``), so a forgotten decorator
never makes a route public. Only aiohttp's own system routes (no route matched: 404, wrong
method: 405) have no metadata: they answer their error, which reveals nothing, without a
key, in OpenAI's error shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_urldispatcher import SystemRoute

from izzi_proxy.dialects import ClientDialect
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES
from izzi_proxy.dialects.gemini import GEMINI
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ATTRIBUTE = "__izzi_route__"


@dataclass(frozen=True, slots=True)
class RouteInfo:
    dialect: ClientDialect  # the shape of its answers and errors
    public: bool = False  # answers without a key (and skips IP blocking)
    metered: bool = False  # admitted by the rate limits with a lease, and leaves a usage record
    limit: str = "requests"  # which of the plan's limits admit it: "requests", or "count_tokens"
    # another dialect when the request carries a header (the Anthropic shape of /v1/models
    # for clients that send anthropic-version)
    by_header: tuple[tuple[str, ClientDialect], ...] = ()
    admin: bool = False  # needs the admin token (IZZI_ADMIN_TOKEN), not an API key
    key_in_query: bool = False  # the key may come as ``?key=`` (Google's Gemini API allows it)
    session: bool = False  # a dashboard page: signed in by its session cookie, which the page checks
    # public, but the sender proves itself to the handler (a payment provider's signed webhook):
    # the IP rules apply, and an AuthenticationFailed it raises counts against the IP
    signed: bool = False

    def dialect_for(self, request: web.Request) -> ClientDialect:
        for header, dialect in self.by_header:
            if header in request.headers:
                return dialect
        return self.dialect


UNTAGGED = RouteInfo(OPENAI_CHAT)  # a handler without @endpoint: needs a key, not metered


def endpoint(
    dialect: ClientDialect,
    *,
    public: bool = False,
    metered: bool = False,
    limit: str = "requests",
    by_header: tuple[tuple[str, ClientDialect], ...] = (),
    admin: bool = False,
    key_in_query: bool = False,
    session: bool = False,
    signed: bool = False,
) -> Callable[[Handler], Handler]:
    info = RouteInfo(dialect, public, metered, limit, by_header, admin, key_in_query, session, signed)

    def tag(handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, info)
        return handler

    return tag


def route_info(request: web.Request) -> RouteInfo | None:
    """The matched route's metadata; None for aiohttp's system routes (404 / 405)."""
    match = request.match_info
    if isinstance(match.route, SystemRoute):
        return None
    info = getattr(match.handler, _ATTRIBUTE, UNTAGGED)
    return info if isinstance(info, RouteInfo) else UNTAGGED


GEMINI_HEADER = "x-goog-api-key"  # the Gemini API's key header: a request that sends it speaks Gemini
GEMINI_PREFIX = "/v1beta/"  # only Google's Gemini API lives under it
_SYSTEM_ROUTES = RouteInfo(OPENAI_CHAT, by_header=(("anthropic-version", ANTHROPIC_MESSAGES), (GEMINI_HEADER, GEMINI)))


def dialect_of(request: web.Request) -> ClientDialect:
    """The dialect a request's answers and errors are written in. An unknown route or a
    wrong method is answered in Anthropic's shape to a request that says it speaks it, and
    in Google's to one under ``/v1beta/`` or with Gemini's key header."""
    info = route_info(request)
    if info is None and request.path.startswith(GEMINI_PREFIX):
        return GEMINI
    return (info or _SYSTEM_ROUTES).dialect_for(request)
