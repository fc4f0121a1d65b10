"""Model -> ordered upstream routes; fail over until an answer's content is ready.

A route is usable when its upstream is configured. It is spoken to in the format the route
names (``wire``), else in the client's format when the upstream speaks it (passthrough),
else in the upstream's preferred format through the canonical form.

**Commit.** A plain answer commits once it has arrived. A stream commits at its first real
content (``wires.is_content``): its preamble (``message_start``, ``ping``,
``response.created``, a role-only chunk) is held back, so a failure before the content — a
refused connection, a timeout, 429, 5xx, 529, an error event — still moves on. Until then
every attempt is the router's; after it, the relay ends a failing stream in the client's
dialect. Nothing is retried that the client caused (a 400, 404, 413, 422).

**Budget.** At most ``[routing] max_attempts`` calls per request, none started after
``failover_budget_s``. On a 429 or a refused key the next key of the same upstream is
tried (``health.KeyPool``), on anything else the next route; an upstream whose breaker is
open, or whose keys all rest, is skipped at no cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.catalog import ModelEntry, Route
from izzi_proxy.config import Config, ConfigError
from izzi_proxy.dialects import ClientDialect, ParsedRequest
from izzi_proxy.errors import CREDENTIAL_STATUSES, UpstreamConnectionError, UpstreamError
from izzi_proxy.exchange import Exchange
from izzi_proxy.health import Breaker, KeyPool, PooledKey, UpstreamHealth
from izzi_proxy.providers import CountsTokens, Provider, UpstreamCall, UpstreamReply, Upstreams
from izzi_proxy.wires import WireFormat, is_content

log = logging.getLogger("izzi.router")


@dataclass(frozen=True, slots=True)
class Candidate:
    route: Route
    provider: Provider
    wire: WireFormat
    passthrough: bool  # the client's format is the wire's: decided here, once, for the exchange


class Router:
    def __init__(self, upstreams: Upstreams, config: Config) -> None:
        self._providers = upstreams.providers
        self._unavailable = upstreams.unavailable
        self.wires = upstreams.wires
        self._routing = r = config.routing
        self.health = {
            name: UpstreamHealth(
                Breaker(r.breaker_failures, r.breaker_open_s),
                KeyPool(config.upstreams[name].key_values(), r.key_cooldown_s),
            )
            for name in self._providers
        }
        for entry in config.catalog:
            for i, route in enumerate(entry.routes):
                if problem := self._wire_problem(route):
                    raise ConfigError("models.toml", f'models."{entry.id}".routes[{i}]', problem)

    def _wire_problem(self, route: Route) -> str | None:
        """Why a route's ``wire`` cannot be spoken (found at start), or None."""
        provider = self._providers.get(route.upstream)
        if route.wire is None or provider is None:
            return None
        if route.wire not in self.wires:
            return f"no wire format {route.wire!r} is installed (known: {', '.join(self.wires)})"
        if route.wire not in provider.wire_formats:
            spoken = ", ".join(sorted(provider.wire_formats))
            return f"upstream {route.upstream!r} does not speak {route.wire!r} (it speaks {spoken})"
        return None

    def candidates(self, entry: ModelEntry, dialect: ClientDialect) -> list[Candidate]:
        """Usable routes in order, each with the format to speak to it."""
        found = []
        for route in entry.routes:
            provider = self._providers.get(route.upstream)
            if provider is None:
                continue
            if route.wire is not None:
                wire: WireFormat | None = self.wires[route.wire]
            elif dialect.name in provider.wire_formats and dialect.name in self.wires:
                wire = self.wires[dialect.name]
            else:
                wire = self.wires.preferred(provider.wire_formats)
            if wire is not None:
                found.append(Candidate(route, provider, wire, wire.name == dialect.name))
        return found

    def token_counters(self, entry: ModelEntry, wire: str = "anthropic_messages") -> list[tuple[Route, CountsTokens]]:
        """The model's routes whose upstream counts the tokens of a body in ``wire`` itself."""
        return [
            (route, provider)
            for route in entry.routes
            if isinstance(provider := self._providers.get(route.upstream), CountsTokens)
            and wire in provider.wire_formats
            and route.wire in (None, wire)
        ]

    def healthy(self, entry: ModelEntry) -> bool:
        """Whether any route of the model could be tried now (``auto`` picks among these)."""
        for route in entry.routes:
            health = self.health.get(route.upstream)
            if health is not None and health.breaker.retry_in() == 0 and health.keys.ready_in() == 0:
                return True
        return False

    def view(self) -> list[dict[str, Any]]:
        """Every configured upstream: usable or why not, its formats, breaker and keys."""
        out = []
        for name, health in self.health.items():
            provider = self._providers[name]
            out.append({"upstream": name, "kind": provider.kind, "available": True,
                        "wire_formats": sorted(provider.wire_formats), **health.view()})  # fmt: skip
        for name, why in self._unavailable.items():
            out.append({"upstream": name, "available": False, "unavailable_because": why})
        return out

    def _why_none(self, entry: ModelEntry) -> str:
        reasons = [f"upstream {r.upstream!r}: {self._unavailable.get(r.upstream, 'not defined')}" for r in entry.routes]
        return f"Model {entry.id!r} has no available upstream ({'; '.join(reasons)})"

    async def send(
        self,
        entry: ModelEntry,
        dialect: ClientDialect,
        parsed: ParsedRequest,
        request_id: str,
        headers: Mapping[str, str],
    ) -> Exchange:
        candidates = self.candidates(entry, dialect)
        if not candidates:
            raise UpstreamError(self._why_none(entry), upstream="-")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._routing.failover_budget_s
        tried: list[str] = []  # what became of each route and call, for the log and the error
        calls = 0
        last: UpstreamError | None = None
        canonical: c.Request | None = None
        for cand in candidates:
            route, health = cand.route, self.health[cand.route.upstream]
            while True:
                if calls >= self._routing.max_attempts or (calls and loop.time() >= deadline):
                    self._exhausted(entry, tried, calls, last)
                if not health.breaker.allow():
                    tried.append(f"{route.upstream}: skipped, failing (retry in {health.breaker.retry_in():.0f} s)")
                    break
                key = health.keys.pick()
                if key is None:
                    health.breaker.release()
                    wait = health.keys.ready_in()
                    tried.append(f"{route.upstream}: skipped, " + (
                        "every key refused" if wait is None else f"every key resting for {wait:.0f} s"))  # fmt: skip
                    break
                if cand.passthrough:
                    body, call_headers = dialect.upstream_body(parsed, route.model), dict(headers)
                else:
                    canonical = canonical or dialect.to_canonical(parsed)
                    body, call_headers = cand.wire.from_canonical(canonical, c.Target(route.model, entry.reasoning)), {}
                call = UpstreamCall(cand.wire.name, body, parsed.stream, request_id, call_headers, key.value)
                calls += 1
                try:
                    reply = await cand.provider.send(call)
                    if parsed.stream:
                        await _hold_preamble(reply, cand.wire, route.upstream)
                except UpstreamError as err:
                    tried.append(f"{route.upstream}: {_short(err)}")
                    last = err
                    same_upstream = self._judge(health, key, err)
                    if not err.retryable:
                        err.attempts, err.tried = calls, tuple(tried)
                        raise
                    log.warning("request %s: %s failed (%s)", request_id, route.upstream, err.message)
                    if same_upstream:
                        continue
                    break
                except BaseException:  # the client went away, or a bug: the upstream is not to blame
                    health.breaker.release()
                    raise
                health.breaker.success()
                return Exchange(route, cand.wire, dialect, parsed, reply, cand.passthrough, calls, tuple(tried))
        self._exhausted(entry, tried, calls, last)

    @staticmethod
    def _judge(health: UpstreamHealth, key: PooledKey, err: UpstreamError) -> bool:
        """Record what a failure says about the upstream; True: its next key may answer."""
        if err.upstream_status == 429:
            health.keys.cool(key, err.retry_after)
            health.breaker.release()
            return True
        if err.upstream_status in CREDENTIAL_STATUSES:
            health.keys.disable(key, f"HTTP {err.upstream_status}")
            health.breaker.release()
            return True
        if not err.retryable:
            health.breaker.success()  # the upstream is up; the request was at fault
        else:
            health.breaker.failure()
        return False

    def _exhausted(self, entry: ModelEntry, tried: list[str], calls: int, last: UpstreamError | None) -> NoReturn:
        """One clear error for the client: the only failure as it was, or the whole story."""
        if last is not None and calls == 1:
            last.attempts, last.tried = calls, tuple(tried)
            raise last
        err = UpstreamError(
            f"Model {entry.id!r} could not be served: {'; '.join(tried)}",
            upstream=last.upstream if last is not None else "-",
            upstream_status=last.upstream_status if last is not None else None,
        )
        err.attempts, err.tried = calls, tuple(tried)
        if last is None:  # nothing was tried: say when something can be
            healths = [self.health[r.upstream] for r in entry.routes if r.upstream in self.health]
            waits = [max(h.breaker.retry_in(), h.keys.ready_in() or 0.0) for h in healths]
            err.retry_after = min((w for w in waits if w > 0), default=None)
        raise err


def _short(err: UpstreamError) -> str:
    return f"HTTP {err.upstream_status}" if err.upstream_status else err.type


async def _hold_preamble(reply: UpstreamReply, wire: WireFormat, upstream: str) -> None:
    """Read a stream on until its content begins; what was read stays in ``reply.head``.
    An error event before then is retryable (nothing has reached the client)."""
    parser = wire.stream_parser(upstream)
    lines, events = sse.LineSplitter(), sse.EventDecoder()
    chunk: bytes | None = reply.head
    try:
        while chunk is not None:
            for line in lines.feed(chunk):
                if (event := events.decode_line(line)) is not None and any(map(is_content, parser.feed(event))):
                    return
            chunk = await anext(reply.body, None)
            if chunk is not None:
                reply.head += chunk
        for line in [*lines.finish(), b""]:
            if (event := events.decode_line(line)) is not None and any(map(is_content, parser.feed(event))):
                return
        raise UpstreamConnectionError(f"Upstream {upstream!r} ended the stream before any content", upstream=upstream)
    except UpstreamError as err:
        await reply.aclose()
        err.retryable = True
        raise
    except BaseException:
        await reply.aclose()
        raise
