"""One upstream answer on its way to the client, and how it gets there, decided once.

The router returns an ``Exchange`` once an upstream has committed to an answer. It carries
the passthrough-or-translate choice, made once when the router picked the route's format
(the client's format is the upstream's, or not), and hands out what follows from it: the
stream's tap, the plain answer in the client's shape, the client's in-stream error, and
the final answer object (which the Responses store keeps). The relay, the handlers and the
Responses API read it; nobody decides again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from izzi_proxy.canonical import Usage
from izzi_proxy.catalog import Route
from izzi_proxy.dialects import ClientDialect, ParsedRequest, StreamTap
from izzi_proxy.dialects.echo import echo_in_body
from izzi_proxy.errors import GatewayError
from izzi_proxy.providers import UpstreamReply
from izzi_proxy.translate import TranslatingTap
from izzi_proxy.wires import WireFormat


@dataclass(slots=True)
class Exchange:
    route: Route
    wire: WireFormat  # the format the upstream answers in
    dialect: ClientDialect  # the format the client reads
    parsed: ParsedRequest
    reply: UpstreamReply
    passthrough: bool  # the upstream's bytes go on as they are (the router's choice)
    attempts: int = 1  # upstream calls made, this one included
    tried: tuple[str, ...] = ()  # what became of the attempts before this one
    tap: StreamTap | None = field(init=False)  # a stream's; it sees the whole answer go by
    body: bytes | None = field(default=None, init=False)  # a plain answer, as sent

    def __post_init__(self) -> None:
        self.tap = None
        if self.parsed.stream:
            self.tap = (
                self.dialect.stream_tap(self.parsed)
                if self.passthrough
                else TranslatingTap(
                    self.wire.stream_parser(self.route.upstream), self.dialect.stream_renderer(self.parsed)
                )
            )

    def answer(self, body: bytes) -> tuple[bytes, Usage | None]:
        """A plain answer in the client's shape (the upstream's bytes but for the model's
        name, in passthrough), and its usage."""
        if self.passthrough:
            self.body = echo_in_body(body, self.parsed.model, self.dialect.model_field)
            return self.body, self.dialect.usage_of_body(body)
        resp = self.wire.parse_response(body, self.route.upstream)
        self.body = self.dialect.render_response(resp, self.parsed)
        return self.body, resp.usage

    def error_frame(self, error: GatewayError) -> bytes:
        """A stream's in-stream error for the client (numbered after what went out, where the
        format numbers its events)."""
        assert self.tap is not None, "only a stream ends with an in-stream error"
        return self.tap.error_frame(error)

    def final(self) -> dict[str, Any] | None:
        """The answer's final object as the client got it, where it has one."""
        if self.tap is not None:
            return self.tap.final
        try:
            final = orjson.loads(self.body or b"")
        except orjson.JSONDecodeError:
            return None
        return final if isinstance(final, dict) else None
