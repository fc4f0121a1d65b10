"""Any OpenAI-compatible upstream: OpenAI, OpenRouter, Cerebras, xAI, Google's OpenAI
endpoint, vLLM, Ollama… over one shared aiohttp session.

The wire path stays lean: the body is encoded once with orjson, and the answer is read
just far enough to commit (status, headers, a stream's first event) before the gateway
relays the rest. Timeouts: ``connect_timeout_s`` to connect; ``first_byte_timeout_s``
until a stream's first event, or a plain answer's whole body; ``idle_timeout_s`` between
stream chunks after that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import ClassVar, Self

import aiohttp
import orjson
from aiohttp import ClientSession

from izzi_proxy import sse
from izzi_proxy.config import ConfigError, UpstreamConfig
from izzi_proxy.errors import UpstreamConnectionError, UpstreamError, upstream_error
from izzi_proxy.providers import UpstreamCall, UpstreamReply, UpstreamUnavailable

__all__ = ["OpenAIProvider"]

_PATHS = {"openai_chat": "/chat/completions"}
_ERROR_BODY_LIMIT = 64 * 1024


class OpenAIProvider:
    kind: ClassVar[str] = "openai"
    wire_formats: ClassVar[frozenset[str]] = frozenset(_PATHS)

    def __init__(self, upstream: UpstreamConfig, session: ClientSession) -> None:
        self.name = upstream.name
        self._session = session
        self._base = upstream.base_url.rstrip("/") if upstream.base_url else ""
        self._headers = {"Content-Type": "application/json", **upstream.extra_headers}
        if upstream.api_key is not None and upstream.api_key.value:
            self._headers["Authorization"] = f"Bearer {upstream.api_key.value}"
        self._first_byte_s = upstream.first_byte_timeout_s
        self._idle_s = upstream.idle_timeout_s
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=upstream.connect_timeout_s)

    @classmethod
    def from_config(cls, upstream: UpstreamConfig, session: ClientSession) -> Self:
        if not upstream.base_url:
            raise ConfigError(upstream.source, "base_url", "an openai upstream needs a base_url")
        if upstream.options:
            raise ConfigError(
                upstream.source, next(iter(upstream.options)), "unknown key for an openai upstream"
            )
        if upstream.api_key is not None and not upstream.api_key.value:
            raise UpstreamUnavailable(f"set {upstream.api_key.env} to use it")
        return cls(upstream, session)

    async def aclose(self) -> None:
        pass  # the session belongs to the app

    async def send(self, call: UpstreamCall) -> UpstreamReply:
        url = self._base + _PATHS[call.wire_format]
        headers = {**self._headers, **call.headers, "X-Request-Id": call.request_id}
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self._first_byte_s):
                response = await self._session.post(
                    url, data=orjson.dumps(call.body), headers=headers, timeout=self._timeout
                )
                if response.status >= 400:
                    raise await self._error(response)
                if not call.stream:
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

        async def close() -> None:
            response.close()

        return UpstreamReply(response.status, response.headers, head, self._rest(response), close)

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
        if first is not None and _is_error(first.data):
            message = _message_of(first.data.encode())
            raise UpstreamError(
                f"Upstream {self.name!r} failed the stream at its start: {message}",
                upstream=self.name,
                retryable=True,
            )
        return head

    async def _rest(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The stream after its head, with the idle timeout enforced by one watchdog timer."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        timed_out = False

        def watchdog() -> None:
            nonlocal handle, timed_out
            idle = loop.time() - last
            if idle >= self._idle_s:
                timed_out = True
                response.close()
            else:
                handle = loop.call_later(self._idle_s - idle, watchdog)

        handle = loop.call_later(self._idle_s, watchdog)
        try:
            async for chunk in response.content.iter_any():
                last = loop.time()
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = f"sent nothing for {self._idle_s:g} s" if timed_out else f"broke off the stream: {exc}"
            raise UpstreamConnectionError(f"Upstream {self.name!r} {reason}", upstream=self.name) from None
        finally:
            handle.cancel()
        if timed_out:
            raise UpstreamConnectionError(
                f"Upstream {self.name!r} sent nothing for {self._idle_s:g} s", upstream=self.name
            )

    async def _error(self, response: aiohttp.ClientResponse) -> UpstreamError:
        body = await response.content.read(_ERROR_BODY_LIMIT)
        response.close()
        return upstream_error(self.name, response.status, _message_of(body))


def _is_error(data: str) -> bool:
    try:
        return "error" in orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError):
        return False


def _message_of(body: bytes) -> str:
    """The message of an OpenAI-style error body, or the body's start."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace").strip() or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return body[:500].decode("utf-8", "replace")
