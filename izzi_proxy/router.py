"""Model -> ordered upstream routes; fall back to the next route before the first byte.

A route is usable when its upstream is configured and its provider speaks the client's
format (passthrough). A retryable failure (connection refused, timeout, 429, 5xx, an
error as the first stream event) moves on to the next route; nothing has reached the
client yet, because providers return only once the first event is in hand.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from izzi_proxy.catalog import ModelEntry, Route
from izzi_proxy.dialects import Dialect, ParsedRequest
from izzi_proxy.errors import UpstreamError
from izzi_proxy.providers import Provider, UpstreamCall, UpstreamReply, Upstreams

log = logging.getLogger("izzi.router")


@dataclass(slots=True)
class Sent:
    route: Route
    reply: UpstreamReply


class Router:
    def __init__(self, upstreams: Upstreams) -> None:
        self._providers = upstreams.providers
        self._unavailable = upstreams.unavailable

    def candidates(self, entry: ModelEntry, wire_format: str) -> list[tuple[Route, Provider]]:
        found = []
        for route in entry.routes:
            provider = self._providers.get(route.upstream)
            if provider is not None and wire_format in provider.wire_formats:
                found.append((route, provider))
        return found

    def _why_none(self, entry: ModelEntry, wire_format: str) -> str:
        reasons = []
        for route in entry.routes:
            if route.upstream in self._unavailable:
                reasons.append(f"upstream {route.upstream!r}: {self._unavailable[route.upstream]}")
            else:
                reasons.append(f"upstream {route.upstream!r} does not speak {wire_format}")
        return f"Model {entry.id!r} has no available upstream ({'; '.join(reasons)})"

    async def send(
        self,
        entry: ModelEntry,
        dialect: Dialect,
        parsed: ParsedRequest,
        request_id: str,
        headers: Mapping[str, str],
    ) -> Sent:
        candidates = self.candidates(entry, dialect.name)
        if not candidates:
            raise UpstreamError(self._why_none(entry, dialect.name), upstream="-")
        last = len(candidates) - 1
        for i, (route, provider) in enumerate(candidates):
            call = UpstreamCall(
                wire_format=dialect.name,
                body=dialect.upstream_body(parsed, route.model),
                stream=parsed.stream,
                request_id=request_id,
                headers=headers,
            )
            try:
                return Sent(route, await provider.send(call))
            except UpstreamError as err:
                if not err.retryable or i == last:
                    raise
                log.warning(
                    "request %s: %s failed (%s); falling back to %s",
                    request_id, route.upstream, err.message, candidates[i + 1][0].upstream,
                )  # fmt: skip
        raise AssertionError("unreachable")
