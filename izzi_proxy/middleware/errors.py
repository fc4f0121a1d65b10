"""Turn every failure into the route's dialect error shape. Never a traceback in a body.

Inside the request log (so the log sees the rendered status), outside everything else.
aiohttp's own HTTP exceptions (unknown route, wrong method, body too large) are mapped to
gateway errors; anything unexpected is logged with its traceback and answered as 500
``server_error`` naming the request id.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from izzi_proxy.config import Config
from izzi_proxy.errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
    ServerError,
)
from izzi_proxy.keys import METRICS, RECENT_ERRORS, REQUEST_ID
from izzi_proxy.routes import dialect_of

log = logging.getLogger("izzi.errors")


def _from_http(request: web.Request, exc: web.HTTPException) -> GatewayError:
    if exc.status == 404:
        hint = "" if "/v1/" in request.path or request.path.startswith("/v1beta/") else " (API routes start with /v1)"
        return NotFound(f"Unknown route: {request.method} {request.path}{hint}")
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        return MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}; use {allowed}")
    if exc.status == 413:
        return RequestTooLarge("Request body is over the size limit")
    if exc.status < 500:
        return InvalidRequest(exc.text or exc.reason)
    return ServerError(exc.reason)


def render(request: web.Request, error: GatewayError) -> web.Response:
    if (metrics := request.app.get(METRICS)) is not None:
        metrics.failed(error.type, error.status)
    if (recent := request.app.get(RECENT_ERRORS)) is not None:  # the dashboard's "recent errors"
        recent.append({
            "at": time.time(), "request_id": request.get(REQUEST_ID), "method": request.method,
            "path": request.path, "status": error.status, "type": error.type, "message": error.message,
        })  # fmt: skip
    dialect = dialect_of(request)
    return web.Response(
        status=error.status,
        body=orjson.dumps(dialect.error_body(error)),
        content_type="application/json",
        headers=error.headers(),
    )


def make_errors(config: Config) -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as err:
            return render(request, err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return render(request, _from_http(request, exc))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            request_id = request.get(REQUEST_ID, "-")
            log.exception("request %s failed", request_id)
            return render(request, ServerError(f"Internal server error (request id {request_id})"))

    return errors
