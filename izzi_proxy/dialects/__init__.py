"""Dialects: the formats clients speak to the gateway.

A dialect knows its request schema, its response and stream shapes and its error shape;
it knows no upstream. Each route is served in exactly one dialect, so the errors
middleware renders any failure in the shape the client expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from izzi_proxy.canonical import Usage
from izzi_proxy.errors import GatewayError


@dataclass(slots=True)
class ParsedRequest:
    """A client body, parsed once and validated: the raw dict plus what routing needs."""

    body: dict[str, Any]
    model: str
    stream: bool


class StreamTap(Protocol):
    """Reads a passthrough stream as it goes by, changing as little as it can.

    ``feed`` returns the bytes to send on: the very chunk it was given unless an event
    had to be hidden. ``done`` says the stream ended properly, ``error`` that an in-stream
    error was relayed.
    """

    usage: Usage | None
    done: bool
    error: bool

    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class Dialect(Protocol):
    name: str  # also the wire format this dialect's passthrough speaks

    def parse(self, raw: bytes) -> ParsedRequest: ...
    def upstream_body(self, parsed: ParsedRequest, upstream_model: str) -> dict[str, Any]: ...
    def stream_tap(self, parsed: ParsedRequest) -> StreamTap: ...
    def usage_of_body(self, body: bytes) -> Usage | None: ...
    def error_body(self, error: GatewayError) -> dict[str, Any]: ...
    def stream_error(self, error: GatewayError) -> bytes: ...
