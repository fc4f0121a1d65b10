"""``GET /configure.py``: the ``configure`` command, served for users who have a key and a
URL but not the gateway's package (``curl -fsSL https://GATEWAY/configure.py | python3 -``).

It is ``izzi_proxy/configure.py`` as it is (standard library only), with the gateway's public
URL filled in: ``[server] public_url`` when set, else the URL the request came to, read from
``X-Forwarded-Proto`` / ``X-Forwarded-Host`` only when the peer is a trusted proxy
(``[ip_block] trusted_proxies``). No key is needed to fetch it, and none is in it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from izzi_proxy import configure
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.keys import CONFIG
from izzi_proxy.middleware.ip_block import within
from izzi_proxy.routes import endpoint

SOURCE = Path(configure.__file__).read_text(encoding="utf-8")
_SLOT = "GATEWAY_URL: str | None = None"
assert _SLOT in SOURCE, "configure.py must keep its GATEWAY_URL line"


def public_url(request: web.Request) -> str:
    config = request.app[CONFIG]
    if config.server.public_url:
        return config.server.public_url
    scheme, host = request.scheme, request.host
    if within(request.remote or "", config.ip_block.trusted_proxies):
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip() or scheme
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip() or host
    return f"{scheme}://{host}"


@endpoint(OPENAI_CHAT, public=True)
async def serve(request: web.Request) -> web.Response:
    text = SOURCE.replace(_SLOT, f"GATEWAY_URL: str | None = {public_url(request)!r}", 1)
    return web.Response(text=text, content_type="text/x-python", charset="utf-8")
