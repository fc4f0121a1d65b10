"""What every HTTP provider shares: POST a JSON body, commit after the status and (for a
stream) the first event, enforce the timeouts, and turn failures into UpstreamErrors.

Timeouts per upstream: ``connect_timeout_s`` to connect; ``first_byte_timeout_s`` until a
stream's first event, or a plain answer's whole body; ``idle_timeout_s`` between stream
chunks after that (one watchdog timer per stream, not one per chunk). A stream relayed
to its terminal event gives its connection back to the pool (read to its end in the
background if the upstream has not ended it yet).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from izzi_proxy import sse
from izzi_proxy.config import UpstreamConfig
from izzi_proxy.errors import InvalidRequest, UpstreamConnectionError, UpstreamError, upstream_error
from izzi_proxy.masking import mask_secrets
from izzi_proxy.providers import UpstreamReply

_ERROR_BODY_LIMIT = 64 * 1024
_DRAIN_S, _DRAIN_LIMIT = 5.0, 64 * 1024  # what is read after a terminal event, at most


class HTTPUpstream:
    def __init__(self, upstream: UpstreamConfig, session: aiohttp.ClientSession) -> None:
        self.name = upstream.name
        self._session = session
        self._first_byte_s = upstream.first_byte_timeout_s
        self._idle_s = upstream.idle_timeout_s
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=upstream.connect_timeout_s)
        self._draining: set[asyncio.Task[None]] = set()

    async def post(self, url: str, body: dict[str, Any], headers: Mapping[str, str], stream: bool) -> UpstreamReply:
        try:
            data = orjson.dumps(body)
        except orjson.JSONEncodeError as exc:  # bodies are checked on arrival (bodies.py): a last guard
            raise InvalidRequest(f"The request cannot be written for the upstream: {exc}") from None
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self._first_byte_s):
                response = await self._session.post(url, data=data, headers=headers, timeout=self._timeout)
                if response.status >= 400:
                    raise await self._error(response)
                if not stream:
                    return UpstreamReply(response.status, response.headers, await response.read())
                head = await self._first_event(response)
        except BaseException as exc:
            if response is not None:
                response.close()
            if isinstance(exc, TimeoutError):
                raise UpstreamConnectionError(
                    f"Upstream {self.name!r} did not answer within {self._first_byte_s:g} s",
                    upstream=self.name,
                ) from None
            if isinstance(exc, aiohttp.ClientError):
                raise UpstreamConnectionError(
                    f"Could not reach upstream {self.name!r}: {exc}", upstream=self.name
                ) from None
            raise

        rest = self._rest(response)

        async def close(finished: bool) -> None:
            await rest.aclose()  # stops its idle watchdog
            if not finished:
                response.close()  # cancels the upstream request
            elif response.content.at_eof():
                response.release()  # the usual case: the connection goes back to the pool
            else:
                self._drain_later(response)

        return UpstreamReply(response.status, response.headers, head, rest, close)

    def _drain_later(self, response: aiohttp.ClientResponse) -> None:
        """The stream's terminal event is relayed but the upstream has not ended its answer
        yet: read what is left in the background, so the connection can be reused."""
        task = asyncio.get_running_loop().create_task(self._drain(response))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _drain(self, response: aiohttp.ClientResponse) -> None:
        left = _DRAIN_LIMIT
        try:
            async with asyncio.timeout(_DRAIN_S):
                while left > 0 and (chunk := await response.content.readany()):
                    left -= len(chunk)
        except (TimeoutError, aiohttp.ClientError):
            pass
        finally:
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def aclose(self) -> None:
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)

    async def _first_event(self, response: aiohttp.ClientResponse) -> bytes:
        head = b""
        while not sse.has_complete_event(head):
            chunk = await response.content.readany()
            if not chunk:
                raise UpstreamConnectionError(
                    f"Upstream {self.name!r} closed the stream before its first event", upstream=self.name
                )
            head += chunk
        if b'"error"' not in head:
            return head  # the usual case: no need to decode the first event
        first = next(sse.iter_events(head), None)
        if first is not None and (error := _error_of(first.data)) is not None:
            raise UpstreamError(
                f"Upstream {self.name!r} failed the stream at its start: {error}",
                upstream=self.name,
                retryable=True,
            )
        return head

    async def _rest(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        watchdog = _IdleWatchdog(response, self._idle_s)
        clock = watchdog.loop.time
        try:
            async for chunk in response.content.iter_any():
                watchdog.last = clock()
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = f"sent nothing for {self._idle_s:g} s" if watchdog.fired else f"broke off the stream: {exc}"
            raise UpstreamConnectionError(f"Upstream {self.name!r} {reason}", upstream=self.name) from None
        finally:
            watchdog.cancel()
        if watchdog.fired:
            raise UpstreamConnectionError(
                f"Upstream {self.name!r} sent nothing for {self._idle_s:g} s", upstream=self.name
            )

    async def _error(self, response: aiohttp.ClientResponse) -> UpstreamError:
        body = await response.content.read(_ERROR_BODY_LIMIT)
        response.close()
        wait = retry_after(response.headers.get("Retry-After"))
        return upstream_error(self.name, response.status, message_of(body), kind_of(body), wait)


class _IdleWatchdog:
    """Closes a stream's response once no chunk came for ``idle_s``: one timer per stream,
    re-armed only when it fires early. ``cancel`` drops the timer, so nothing is left in a
    cycle holding the response (an idle process runs no full collection to free one)."""

    __slots__ = ("_handle", "_idle_s", "_response", "fired", "last", "loop")

    def __init__(self, response: aiohttp.ClientResponse, idle_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self._response, self._idle_s = response, idle_s
        self.last, self.fired = self.loop.time(), False
        self._handle: asyncio.TimerHandle | None = self.loop.call_later(idle_s, self._check)

    def _check(self) -> None:
        idle = self.loop.time() - self.last
        if idle >= self._idle_s:
            self.fired, self._handle = True, None
            self._response.close()
        else:
            self._handle = self.loop.call_later(self._idle_s - idle, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date (RFC 9110); None if neither."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), 3600.0) if math.isfinite(seconds) else None


def _error_of(data: str) -> str | None:
    """The message of an error event (OpenAI's ``{"error": …}``, Anthropic's
    ``{"type": "error", "error": …}``), or None for any other event."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or "error" not in event:
        return None
    return message_of(data.encode())


def _error_object(body: bytes) -> Any:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data.get("error") if isinstance(data, dict) else None


def message_of(body: bytes) -> str:
    """The message of an OpenAI- or Anthropic-style error body, or the body's start;
    anything shaped like a secret masked (an upstream may quote the key it refused)."""
    error = _error_object(body)
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        text = error["message"]
    elif isinstance(error, str):
        text = error
    else:
        text = body[:500].decode("utf-8", "replace").strip() or "(empty body)"
    return mask_secrets(text[:2000])


def kind_of(body: bytes) -> str | None:
    """The upstream's own error type (``rate_limit_exceeded``, ``overloaded_error``…)."""
    error = _error_object(body)
    kind = (error.get("type") or error.get("code")) if isinstance(error, dict) else None
    return kind if isinstance(kind, str) and kind.isidentifier() and len(kind) <= 64 else None
