"""The small canonical form that every dialect and wire format translates through.

Two formats need only their own translators to and from this form (N + M, not N x M).
It keeps what both OpenAI chat and Anthropic Messages can carry; what only one side has
is dropped by the written rules in ``docs/translation.md`` and logged, never forwarded
into an upstream 400. Names follow Anthropic where the two differ (stop reasons, the tool
result living in a user turn), because Anthropic's form is the richer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# -- usage ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    """Token usage of one upstream call.

    ``input_tokens`` counts uncached input only (Anthropic's meaning); cached input is
    in ``cache_read_tokens`` and ``cache_write_tokens``. ``output_tokens`` includes
    reasoning; ``reasoning_tokens`` says how much of it was reasoning.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens + self.output_tokens

    @property
    def prompt_tokens(self) -> int:
        """All input, cached or not (OpenAI's ``prompt_tokens``)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


# -- content parts ---------------------------------------------------------------------------


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Image:
    """An image, inline (``data`` in base64 with its ``media_type``) or by ``url``."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None


@dataclass(slots=True)
class Document:
    """A document: a PDF inline or by URL, or plain text."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    text: str | None = None
    title: str | None = None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it; Anthropic's ``input`` object is parsed


@dataclass(slots=True)
class ToolResult:
    tool_call_id: str
    content: list[Text | Image]
    is_error: bool = False


@dataclass(slots=True)
class Thinking:
    text: str
    signature: str | None = None  # bound to Anthropic: relayed byte-exact or not at all


@dataclass(slots=True)
class RedactedThinking:
    data: str


Part = Text | Image | Document | ToolCall | ToolResult | Thinking | RedactedThinking


@dataclass(slots=True)
class Message:
    """One turn. ``system`` is an instruction in the middle of the conversation (Anthropic's
    mid-conversation system message, a later system or developer message from OpenAI
    clients): its text parts apply from that point. Instructions before the first turn are
    ``Request.system``."""

    role: Literal["system", "user", "assistant"]
    parts: list[Part]


# -- requests --------------------------------------------------------------------------------


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None
    parameters: dict[str, Any]


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "any", "none", "tool"]
    name: str | None = None


@dataclass(slots=True)
class Reasoning:
    """How hard to think: a token budget (Anthropic) and/or an effort word (OpenAI)."""

    budget_tokens: int | None = None
    effort: str | None = None  # minimal | low | medium | high


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message]
    system: list[str] = field(default_factory=list)
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # Anthropic's and Gemini's; OpenAI has none
    stop: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    user: str | None = None
    stream: bool = False
    include_usage: bool = False  # an OpenAI client asked for the usage chunk
    response_format: dict[str, Any] | None = None  # OpenAI's: {"type": "json_schema", "json_schema": {...}}


@dataclass(frozen=True, slots=True)
class Target:
    """What a translation needs to know about where the request goes."""

    model: str  # the upstream's model name
    reasoning: bool = False  # takes reasoning effort / a thinking budget


# -- answers ---------------------------------------------------------------------------------

StopReason = Literal[
    "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
    "model_context_window_exceeded",
]  # fmt: skip


@dataclass(slots=True)
class Response:
    id: str
    model: str
    parts: list[Part]
    stop_reason: StopReason | None
    usage: Usage
    stop_sequence: str | None = None


# -- stream events ---------------------------------------------------------------------------


@dataclass(slots=True)
class Start:
    id: str
    model: str
    usage: Usage | None = None


@dataclass(slots=True)
class BlockStart:
    """A content block opens; ``part`` holds its kind and fixed fields (id and name of a
    tool call, the data of redacted thinking), with empty text."""

    index: int
    part: Text | ToolCall | Thinking | RedactedThinking


@dataclass(slots=True)
class Delta:
    index: int
    kind: Literal["text", "thinking", "signature", "arguments"]
    value: str


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class Finish:
    stop_reason: StopReason | None
    stop_sequence: str | None = None


@dataclass(slots=True)
class UsageUpdate:
    usage: Usage


@dataclass(slots=True)
class End:
    pass


StreamEvent = Start | BlockStart | Delta | BlockStop | Finish | UsageUpdate | End
