"""Google's Gemini API routes: ``models/{model}:generateContent``,
``:streamGenerateContent`` (SSE with ``?alt=sse``, else Google's JSON array) and
``:countTokens``, under ``/v1beta`` and ``/v1`` as Google serves them; the model list is
``models_api``'s. Other methods on a model (``:embedContent``, ``:predict``…) answer 404 in
Google's envelope, naming the ones served. The key may come as ``x-goog-api-key``,
``?key=`` or ``Authorization: Bearer``.
"""

from __future__ import annotations

from aiohttp import web

from izzi_proxy import canonical as c
from izzi_proxy import tokens
from izzi_proxy.access import check_model
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES_WIRE
from izzi_proxy.dialects.gemini import GEMINI
from izzi_proxy.errors import InvalidRequest, NotFound
from izzi_proxy.handlers import TOKEN_COUNT_HEADER, count_exact, count_kind, generate, json_response, read_body, resolve
from izzi_proxy.keys import API_KEY, CONFIG
from izzi_proxy.routes import Handler, endpoint

PREFIXES = ("/v1beta", "/v1")
METHODS = ("generateContent", "streamGenerateContent", "countTokens")
_ALT = {None: False, "json": False, "sse": True}
_COUNTED = ("messages", "system", "tools", "tool_choice")  # what a count reads of a Messages body


def _streaming(request: web.Request) -> bool:
    """Whether the stream is SSE (``alt=sse``) or Google's JSON array (``alt=json``, the default)."""
    alt = request.query.get("alt")
    if alt not in _ALT:
        raise InvalidRequest(f"Invalid value for alt: {alt!r} (json or sse)", param="alt")
    return _ALT[alt]


def _generation(stream: bool) -> Handler:
    @endpoint(GEMINI, metered=True, key_in_query=True)
    async def handle(request: web.Request) -> web.StreamResponse:
        sse = _streaming(request) if stream else False
        parsed = GEMINI.parse(read_body(request), request.match_info["model"], stream, sse)
        return (await generate(request, GEMINI, parsed)).response

    return handle


generate_content = _generation(stream=False)
stream_generate_content = _generation(stream=True)


@endpoint(GEMINI, metered=True, limit="count_tokens", key_in_query=True)
async def count_tokens(request: web.Request) -> web.Response:
    """The request's input tokens: Google's own count for Gemini models, Anthropic's for
    Claude models (the request translated), a local estimate for the rest;
    ``x-izzi-token-count`` says ``exact`` or ``estimated``."""
    asked = request.match_info["model"]
    parsed = GEMINI.parse_count_tokens(read_body(request), asked)
    entry = resolve(request, asked)
    check_model(request.app[CONFIG].limits, request[API_KEY], entry)
    native = parsed.body.get("generateContentRequest") or {"contents": parsed.body.get("contents")}
    gemini_body = {k: v for k, v in native.items() if k != "model"}
    exact = await count_exact(request, entry, asked, gemini_body, {}, "gemini")
    if exact is None:  # no Gemini upstream counts it: Anthropic's count of the same request, else an estimate
        written = ANTHROPIC_MESSAGES_WIRE.from_canonical(GEMINI.to_canonical(parsed), c.Target(entry.id))
        body = {k: v for k, v in written.items() if k in _COUNTED}
        exact = await count_exact(request, entry, asked, body, {})
        counted = exact if exact is not None else tokens.estimate_messages_body(body)
    else:
        counted = exact
    details = [{"modality": "TEXT", "tokenCount": counted}]
    answer = {"totalTokens": counted, "promptTokensDetails": details}
    return json_response(answer, headers={TOKEN_COUNT_HEADER: count_kind(exact)})


@endpoint(GEMINI, public=True)
async def unknown_method(request: web.Request) -> web.Response:
    method = request.match_info["method"]
    raise NotFound(
        f"Method {method!r} is not served on models/{request.match_info['model']}: this gateway serves "
        f"{', '.join(METHODS)}",
        param="method",
    )


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        base = f"{prefix}/models/{{model:[^/:]+}}"
        app.router.add_post(f"{base}:generateContent", generate_content)
        app.router.add_post(f"{base}:streamGenerateContent", stream_generate_content)
        app.router.add_post(f"{base}:countTokens", count_tokens)
        app.router.add_post(f"{base}:{{method}}", unknown_method)
