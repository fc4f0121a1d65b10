"""Wire formats: how an upstream speaks, apart from how the client speaks to the gateway.

A wire format writes a canonical request in the upstream's shape and reads the upstream's
answers and stream events back as canonical ones. The core ships three (OpenAI chat,
Anthropic Messages, OpenAI Responses); a provider plugin brings more by naming them on its
class (``BringsWireFormats``), so a native Gemini or Bedrock upstream needs no core change.

When the client's dialect has the upstream's format, nothing is translated (passthrough,
``dialects.ClientDialect``); the wire format is then only asked where a stream's content
starts, so that failover stays possible until then (``router``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Protocol, runtime_checkable

from izzi_proxy import canonical as c
from izzi_proxy import sse

# Formats a request is translated into when the upstream does not speak the client's, in
# order of preference (a plugin's own formats come after these).
PREFERENCE = ("openai_chat", "anthropic_messages", "openai_responses")


class StreamParser(Protocol):
    """Reads an upstream's stream events as canonical events; raises UpstreamError for
    an in-stream error."""

    usage: c.Usage | None
    usage_final: bool
    done: bool

    def feed(self, event: sse.SSEEvent) -> list[c.StreamEvent]: ...


class WireFormat(Protocol):
    name: str  # as providers name it in ``wire_formats`` and routes in ``wire = "…"``

    def from_canonical(self, req: c.Request, target: c.Target) -> dict[str, Any]: ...
    def parse_response(self, body: bytes, upstream: str) -> c.Response: ...
    def stream_parser(self, upstream: str) -> StreamParser: ...


@runtime_checkable
class BringsWireFormats(Protocol):
    """Optional, on a provider class: the wire formats it adds to the registry."""

    wire_codecs: ClassVar[tuple[WireFormat, ...]]


def is_content(event: c.StreamEvent) -> bool:
    """Whether a canonical stream event is something the client must see: the answer has
    begun (text, thinking, a tool call) or ended. What comes before (the message's start,
    an empty block opening, usage) is preamble, held back while failover is still possible."""
    if isinstance(event, c.Delta):
        return bool(event.value)
    if isinstance(event, c.BlockStart):
        return isinstance(event.part, c.ToolCall | c.RedactedThinking)
    return isinstance(event, c.Finish | c.End)


class WireFormats:
    """The wire formats by name: the core's, and those the loaded providers bring."""

    def __init__(self, extra: Iterable[WireFormat] = ()) -> None:
        from izzi_proxy.dialects.anthropic_messages import ANTHROPIC_MESSAGES_WIRE
        from izzi_proxy.dialects.openai_chat import OPENAI_CHAT_WIRE
        from izzi_proxy.dialects.openai_responses import OPENAI_RESPONSES_WIRE

        self._formats: dict[str, WireFormat] = {}
        for wire in (OPENAI_CHAT_WIRE, ANTHROPIC_MESSAGES_WIRE, OPENAI_RESPONSES_WIRE, *extra):
            self.add(wire)

    def add(self, wire: WireFormat) -> None:
        known = self._formats.get(wire.name)
        if known is not None and known is not wire:
            raise ValueError(f"two wire formats are named {wire.name!r}")
        self._formats[wire.name] = wire

    def __contains__(self, name: object) -> bool:
        return name in self._formats

    def __iter__(self) -> Iterator[str]:
        return iter(self._formats)

    def __getitem__(self, name: str) -> WireFormat:
        return self._formats[name]

    def preferred(self, spoken: Iterable[str]) -> WireFormat | None:
        """The format to translate into, of those an upstream speaks."""
        names = set(spoken) & self._formats.keys()
        order = [n for n in PREFERENCE if n in names] + sorted(names - set(PREFERENCE))
        return self._formats[order[0]] if order else None
