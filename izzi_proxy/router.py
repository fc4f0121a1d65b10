"""Model -> ordered upstream routes; fall back to the next route before the first byte.

A route is usable when its upstream is configured. When the upstream speaks the client's
format the body passes through (only ``model`` rewritten); otherwise the request goes
through the canonical form into the upstream's format. A retryable failure (connection
refused, timeout, 429, 5xx, an error as the first stream event) moves on to the next
route; nothing has reached the client yet, because providers return only once the first
event is in hand.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from izzi_proxy import canonical as c
from izzi_proxy.catalog import ModelEntry, Route
from izzi_proxy.dialects import TRANSLATION_TARGETS, Dialect, ParsedRequest, by_name
from izzi_proxy.errors import UpstreamError
from izzi_proxy.providers import CountsTokens, Provider, UpstreamCall, UpstreamReply, Upstreams

log = logging.getLogger("izzi.router")


@dataclass(slots=True)
class Sent:
    route: Route
    reply: UpstreamReply
    wire: Dialect  # the format the upstream answered in
    attempts: int = 1  # routes tried, this one included

    def passthrough(self, dialect: Dialect) -> bool:
        return self.wire is dialect


class Router:
    def __init__(self, upstreams: Upstreams) -> None:
        self._providers = upstreams.providers
        self._unavailable = upstreams.unavailable

    def candidates(self, entry: ModelEntry, dialect: Dialect) -> list[tuple[Route, Provider, Dialect]]:
        """Usable routes in order, each with the format to speak to it (the client's if it can)."""
        found = []
        for route in entry.routes:
            provider = self._providers.get(route.upstream)
            if provider is None:
                continue
            if dialect.name in provider.wire_formats:
                found.append((route, provider, dialect))
            elif target := next((f for f in TRANSLATION_TARGETS if f in provider.wire_formats), None):
                found.append((route, provider, by_name(target)))
        return found

    def token_counters(self, entry: ModelEntry) -> list[tuple[Route, CountsTokens]]:
        """The model's routes whose upstream counts Anthropic-format tokens itself."""
        return [
            (route, provider)
            for route in entry.routes
            if isinstance(provider := self._providers.get(route.upstream), CountsTokens)
            and "anthropic_messages" in provider.wire_formats
        ]

    def _why_none(self, entry: ModelEntry) -> str:
        reasons = [f"upstream {r.upstream!r}: {self._unavailable.get(r.upstream, 'not defined')}" for r in entry.routes]
        return f"Model {entry.id!r} has no available upstream ({'; '.join(reasons)})"

    async def send(
        self,
        entry: ModelEntry,
        dialect: Dialect,
        parsed: ParsedRequest,
        request_id: str,
        headers: Mapping[str, str],
    ) -> Sent:
        candidates = self.candidates(entry, dialect)
        if not candidates:
            raise UpstreamError(self._why_none(entry), upstream="-")
        canonical: c.Request | None = None
        last = len(candidates) - 1
        for i, (route, provider, wire) in enumerate(candidates):
            if wire is dialect:
                body, call_headers = dialect.upstream_body(parsed, route.model), dict(headers)
            else:
                canonical = canonical or dialect.to_canonical(parsed)
                body, call_headers = (
                    wire.from_canonical(canonical, c.Target(route.model, entry.reasoning)),
                    {},
                )
            call = UpstreamCall(wire.name, body, parsed.stream, request_id, call_headers)
            try:
                return Sent(route, await provider.send(call), wire, i + 1)
            except UpstreamError as err:
                if not err.retryable or i == last:
                    err.attempts = i + 1
                    raise
                log.warning(
                    "request %s: %s failed (%s); falling back to %s",
                    request_id, route.upstream, err.message, candidates[i + 1][0].upstream,
                )  # fmt: skip
        raise AssertionError("unreachable")
