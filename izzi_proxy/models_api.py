"""``GET /v1/models`` and ``GET /v1/models/{id}``: the catalog, in the client's shape.

OpenAI's list shape by default, with our tier, context window, pricing and aliases. Under
``/v1beta/`` or with ``x-goog-api-key`` (the google-genai SDKs, the Gemini CLI) it is
Gemini's: ``{"models": [...], "nextPageToken"}`` paged by ``pageSize`` (1 to 1000, default
50) and ``pageToken``. A request that carries ``anthropic-version`` (the anthropic SDK,
Claude Code) gets Anthropic's: ``ModelInfo`` objects in a page with ``first_id`` / ``last_id`` /
``has_more``, paged by ``limit`` (1 to 1000, default 20), ``after_id`` and ``before_id``;
its errors are Anthropic's too (the paging parameters are checked for OpenAI's shape too,
which is never paged). Only catalog ids are listed; ``/v1/models/{id}`` also
resolves aliases, dated vendor ids and family names to the model that serves them.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from izzi_proxy.catalog import ModelEntry
from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES
from izzi_proxy.dialects.gemini import GEMINI
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT
from izzi_proxy.errors import InvalidRequest
from izzi_proxy.handlers import json_response, resolve
from izzi_proxy.keys import CONFIG
from izzi_proxy.routes import GEMINI_HEADER, dialect_of, endpoint

_STARTED = int(time.time())
_BY_HEADER = (("anthropic-version", ANTHROPIC_MESSAGES), (GEMINI_HEADER, GEMINI))
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
GEMINI_PAGE_SIZE = 50


def _shown(request: web.Request, entry: ModelEntry) -> dict[str, Any]:
    dialect = dialect_of(request)
    if dialect is GEMINI:
        return entry.to_gemini()
    return entry.to_anthropic() if dialect is ANTHROPIC_MESSAGES else entry.to_openai(_STARTED)


@endpoint(OPENAI_CHAT, by_header=_BY_HEADER)
async def list_models(request: web.Request) -> web.Response:
    """The paging parameters are checked in both shapes; OpenAI's list is never paged."""
    entries = list(request.app[CONFIG].catalog)
    dialect = dialect_of(request)
    if dialect is GEMINI:
        return json_response(_gemini_page(request.query, entries))
    page = _page(request.query, [entry.to_anthropic() for entry in entries])
    if dialect is not ANTHROPIC_MESSAGES:
        return json_response({"object": "list", "data": [entry.to_openai(_STARTED) for entry in entries]})
    return json_response(page)


@endpoint(OPENAI_CHAT, by_header=_BY_HEADER)
async def get_model(request: web.Request) -> web.Response:
    return json_response(_shown(request, resolve(request, request.match_info["model"])))


@endpoint(GEMINI, key_in_query=True)
async def list_gemini_models(request: web.Request) -> web.Response:
    return json_response(_gemini_page(request.query, list(request.app[CONFIG].catalog)))


@endpoint(GEMINI, key_in_query=True)
async def get_gemini_model(request: web.Request) -> web.Response:
    return json_response(resolve(request, request.match_info["model"]).to_gemini())


def _gemini_page(query: Any, entries: list[ModelEntry]) -> dict[str, Any]:
    """One page of Gemini's model list; the page token is the id the next page starts at."""
    raw = query.get("pageSize", str(GEMINI_PAGE_SIZE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"pageSize: must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}", param="pageSize")
    size, ids = int(raw), [entry.id for entry in entries]
    token = query.get("pageToken")
    if token and token not in ids:
        raise InvalidRequest(f"pageToken: {token!r} is not a page token of this list", param="pageToken")
    start = ids.index(token) if token else 0
    page: dict[str, Any] = {"models": [entry.to_gemini() for entry in entries[start : start + size]]}
    if start + size < len(entries):
        page["nextPageToken"] = ids[start + size]
    return page


def _page(query: Any, models: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of Anthropic's model list."""
    raw = query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}", param="limit")
    limit = int(raw)
    ids = [model["id"] for model in models]
    for name in ("after_id", "before_id"):
        if name in query and query[name] not in ids:
            raise InvalidRequest(f"{name}: {query[name]!r} is not a model id in this list", param=name)
    if "before_id" in query:
        end = ids.index(query["before_id"])
        chosen, more = models[max(0, end - limit) : end], end - limit > 0
    else:
        start = ids.index(query["after_id"]) + 1 if "after_id" in query else 0
        chosen, more = models[start : start + limit], start + limit < len(models)
    return {
        "data": chosen,
        "first_id": chosen[0]["id"] if chosen else None,
        "last_id": chosen[-1]["id"] if chosen else None,
        "has_more": more,
    }
