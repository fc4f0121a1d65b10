"""The OpenAI Chat dialect: request parsing, upstream bodies, errors, and the passthrough tap."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from izzi_proxy.canonical import Usage
from izzi_proxy.dialects.openai_chat import OPENAI_CHAT, OpenAIChatTap
from izzi_proxy.errors import GatewayError, InvalidRequest
from izzi_proxy.sse import iter_events
from izzi_proxy.testing import ChatScript

MESSAGES = [{"role": "user", "content": "hi"}]


def script(model: str = "gpt-4o", chunks: int = 3) -> ChatScript:
    body = {"model": model, "messages": MESSAGES, "stream": True}
    body["stream_options"] = {"include_usage": True}  # what upstream_body() always asks for
    return ChatScript(body, chunks=chunks, created=1700000000, id="chatcmpl-test")


def frames(model: str = "gpt-4o") -> list[bytes]:
    return list(script(model).frames())


def events(data: bytes) -> list[Any]:
    """The stream's events, JSON payloads decoded (so a rewritten chunk compares by value)."""
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in iter_events(data)]


def splits(data: bytes) -> Iterator[list[bytes]]:
    yield [data]
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def run(tap: OpenAIChatTap, chunks: list[bytes]) -> bytes:
    return b"".join(tap.feed(chunk) for chunk in chunks) + tap.finish()


def expected_usage(model: str = "gpt-4o") -> Usage:
    u = script(model).usage()
    return Usage(input_tokens=u["prompt_tokens"], output_tokens=u["completion_tokens"])


def expected_events(model: str, hide: bool) -> list[Any]:
    out = events(b"".join(frames(model)))
    if hide:
        out = [e for e in out if not (isinstance(e, dict) and not e["choices"] and e.get("usage"))]
        for e in out:
            if isinstance(e, dict) and e.get("usage"):
                del e["usage"]  # usage on a choice chunk: that chunk, without the key
    return out


# -- the tap over whole streams, cut at every byte ----------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o", "usage_in_choice"])
@pytest.mark.parametrize("hide", [True, False], ids=["hide", "show"])
def test_tap_every_split(model: str, hide: bool) -> None:
    stream = b"".join(frames(model))
    expected = expected_events(model, hide)
    assert len(expected) == len(frames(model)) - (hide and model == "gpt-4o")
    for chunks in splits(stream):
        tap = OpenAIChatTap(model, hide_usage=hide)  # asked under the upstream's own name
        outs = [tap.feed(chunk) for chunk in chunks]
        out = b"".join(outs) + tap.finish()
        assert events(out) == expected, chunks
        if not hide:  # shown: the stream goes on as it came, each line as soon as it ends
            assert out == stream
        assert (b'"usage":{' in out) is not hide
        assert tap.usage == expected_usage(model)
        assert tap.done is True
        assert tap.error is False


@pytest.mark.parametrize("hide", [True, False], ids=["hide", "show"])
def test_tap_forwards_the_same_chunk_object(hide: bool) -> None:
    tap = OpenAIChatTap("gpt-4o", hide_usage=hide)
    *content, usage_chunk, done_frame = frames()
    for frame in content:
        assert tap.feed(frame) is frame
    assert tap.feed(usage_chunk) == (b"" if hide else usage_chunk)
    assert tap.feed(done_frame) is done_frame
    assert tap.finish() == b""
    several = b"".join(content)
    assert OpenAIChatTap("gpt-4o", hide_usage=hide).feed(several) is several


@pytest.mark.parametrize("model", ["gpt-4o", "usage_in_choice"])
@pytest.mark.parametrize("hide", [True, False], ids=["hide", "show"])
def test_tap_names_the_asked_model_in_every_chunk(model: str, hide: bool) -> None:
    stream = b"".join(frames(model))
    expected = expected_events(model, hide)
    for e in expected:
        if isinstance(e, dict):
            e["model"] = "gpt-4o-2024-08-06"
    for chunks in splits(stream):
        tap = OpenAIChatTap("gpt-4o-2024-08-06", hide_usage=hide)
        assert events(run(tap, chunks)) == expected, chunks
        assert tap.usage == expected_usage(model) and tap.done


def test_tap_crlf_stream() -> None:
    stream = b"".join(frames()).replace(b"\n", b"\r\n")
    for chunks in splits(stream):
        tap = OpenAIChatTap("gpt-4o", hide_usage=True)
        assert events(run(tap, chunks)) == expected_events("gpt-4o", hide=True), chunks
        assert tap.usage == expected_usage()
        assert tap.done


# -- what the tap reads ----------------------------------------------------------------------


def usage_frame(usage: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps({"id": "c", "choices": [], "usage": usage}) + b"\n\n"


PLAIN = {"prompt_tokens": 9, "completion_tokens": 3}
FULL = {
    "prompt_tokens": 100,
    "completion_tokens": 40,
    "prompt_tokens_details": {"cached_tokens": 30},
    "completion_tokens_details": {"reasoning_tokens": 25},
}
NULLS = {"prompt_tokens_details": None, "completion_tokens_details": {"reasoning_tokens": None}}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (FULL, Usage(input_tokens=70, output_tokens=40, cache_read_tokens=30, reasoning_tokens=25)),
        (PLAIN, Usage(input_tokens=9, output_tokens=3)),
        ({**PLAIN, **NULLS}, Usage(input_tokens=9, output_tokens=3)),
        ({"prompt_tokens": None, "completion_tokens": None}, Usage()),
        ({}, Usage()),
    ],
)
@pytest.mark.parametrize("hide", [True, False], ids=["hide", "show"])
def test_tap_reads_usage(usage: dict[str, Any], expected: Usage, hide: bool) -> None:
    tap = OpenAIChatTap("gpt-4o", hide_usage=hide)
    frame = usage_frame(usage)
    assert tap.feed(frame) == (b"" if hide else frame)
    assert tap.usage == expected


TEXT = 'here is JSON: {"usage": {"prompt_tokens": 1}} and "usage" : {'
TEXT_CHUNK = {"id": "c", "choices": [{"index": 0, "delta": {"content": TEXT}}], "usage": None}


@pytest.mark.parametrize(
    "frame",
    [
        b'data: {"id":"c","choices":[],"usage":null}\n\n',
        b'data: {"id":"c","choices":[],"usage" : null}\n\n',
        b'data: {"id":"c","choices":[{"index":0,"delta":{}}],"usage":null}\n\n',
        b"data: " + orjson.dumps(TEXT_CHUNK) + b"\n\n",  # the text, escaped in a JSON string
    ],
    ids=["null", "null-spaced", "null-with-choices", "usage-text-in-content"],
)
@pytest.mark.parametrize("hide", [True, False], ids=["hide", "show"])
def test_not_usage(frame: bytes, hide: bool) -> None:
    tap = OpenAIChatTap("gpt-4o", hide_usage=hide)
    assert tap.feed(frame) is frame
    assert tap.usage is None
    tap.feed(usage_frame(PLAIN))
    assert tap.feed(frame) is frame  # and the usage already read stays
    assert tap.usage == Usage(input_tokens=9, output_tokens=3)


@pytest.mark.parametrize(("model", "error"), [("stream_error_after_1", True), ("cut_after_1", False)])
@pytest.mark.parametrize("hide", [True, False], ids=["hide", "show"])
def test_in_stream_error_and_cut_stream(model: str, error: bool, hide: bool) -> None:
    stream = b"".join(ChatScript({"model": model, "messages": MESSAGES}).frames())
    assert stream.count(b'data: {"error":') == error
    for chunks in splits(stream):
        tap = OpenAIChatTap(model, hide_usage=hide)
        assert run(tap, chunks) == stream
        assert (tap.error, tap.done, tap.usage) == (error, False, None)


def test_done_without_trailing_line_end_in_hidden_mode() -> None:
    tap = OpenAIChatTap("gpt-4o", hide_usage=True)
    out = run(tap, [b'data: {"choices":[]}\n\ndata: [DONE]'])
    assert events(out) == [{"choices": []}, "[DONE]"]
    assert tap.done


def test_shown_mode_finish_does_not_repeat_the_tail() -> None:
    tap = OpenAIChatTap("gpt-4o", hide_usage=False)
    stream = b'data: {"choices":[]}\n\ndata: [DONE]'
    assert run(tap, [stream]) == stream


def test_hidden_mode_crlf_split_between_cr_and_lf() -> None:
    tap = OpenAIChatTap("gpt-4o", hide_usage=True)
    out = run(tap, [b"data: a\r", b"\ndata: b\r\n\r\n"])
    assert [e.data for e in iter_events(out)] == ["a\nb"]


X_GROQ = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"x_groq":{"id":"req_1","usage":{"prompt_tokens":5,"completion_tokens":2}}}\n\n'
)


@pytest.mark.parametrize("hide", [True, False], ids=["hide", "show"])
def test_nested_usage_is_not_usage(hide: bool) -> None:
    tap = OpenAIChatTap("gpt-4o", hide_usage=hide)
    tap.feed(usage_frame({"prompt_tokens": 5, "completion_tokens": 2}))
    assert tap.feed(X_GROQ) is X_GROQ
    assert tap.usage == Usage(input_tokens=5, output_tokens=2)


# -- parse -----------------------------------------------------------------------------------


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gpt-4o", "messages": MESSAGES, **fields})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


@pytest.mark.parametrize(("stream", "expected"), [(None, False), (True, True), (False, False)])
def test_parse_valid(stream: bool | None, expected: bool) -> None:
    raw = body(stream=stream, temperature=1, user="u-1", metadata={"k": "v"})
    parsed = OPENAI_CHAT.parse(raw)
    assert (parsed.body, parsed.model, parsed.stream) == (orjson.loads(raw), "gpt-4o", expected)


def test_parse_valid_rich_messages() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this"}, image]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    parsed = OPENAI_CHAT.parse(body(messages=messages, tools=tools, n=2, stream=True))
    assert (parsed.model, parsed.stream, parsed.body["messages"]) == ("gpt-4o", True, messages)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": 5}, "model"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [*MESSAGES, user(3)]}, "messages[1].content"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"n": 0}, "n"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"messages": [user([{"type": "text"}])]}, "messages[0].content[0].text"),
        (
            {"messages": [user([{"type": "text", "text": "a"}, {"type": "image_url"}])]},
            "messages[0].content[1].image_url",
        ),
    ],
)
def test_parse_invalid_names_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        OPENAI_CHAT.parse(body(**fields))
    assert info.value.param == param
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (orjson.dumps({"messages": MESSAGES}), "model"),
        (orjson.dumps({"model": "m"}), "messages"),
        (body(messages=[{"content": "x"}]), "messages[0].role"),
    ],
    ids=["model", "messages", "role"],
)
def test_parse_missing_field_names_the_field(raw: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        OPENAI_CHAT.parse(raw)
    assert info.value.param == param


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"[1]", b"null", b'"x"'])
def test_parse_not_an_object(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        OPENAI_CHAT.parse(raw)
    assert info.value.param is None


# -- upstream body, tap choice, plain bodies, errors -------------------------------------------


@pytest.mark.parametrize(
    ("fields", "stream_options"),  # stream_options None: as the client sent it
    [
        ({"stream": True}, {"include_usage": True}),
        ({"stream": True, "stream_options": None}, {"include_usage": True}),
        ({"stream": True, "stream_options": {"include_usage": False}}, {"include_usage": True}),
        ({"stream": True, "stream_options": {"x": 1}}, {"x": 1, "include_usage": True}),
        ({"stream": True, "stream_options": {"include_usage": True, "x": 1}}, None),
        ({}, None),
        ({"stream": False, "stream_options": {"x": 1}}, {"x": 1}),
    ],
)
def test_upstream_body(fields: dict[str, Any], stream_options: dict[str, Any] | None) -> None:
    parsed = OPENAI_CHAT.parse(body(**fields))
    before = copy.deepcopy(parsed.body)
    up = OPENAI_CHAT.upstream_body(parsed, "gpt-4o-2024-08-06")
    assert parsed.body == before  # not mutated, nested dicts included
    expected = {**before, "model": "gpt-4o-2024-08-06"}
    if stream_options is not None:
        expected["stream_options"] = stream_options
    assert up == expected


@pytest.mark.parametrize(
    ("options", "hidden"),
    [(None, True), ({"include_usage": False}, True), ({"include_usage": True}, False)],
)
def test_stream_tap_hides_usage_only_if_the_gateway_asked(options: Any, hidden: bool) -> None:
    tap = OPENAI_CHAT.stream_tap(OPENAI_CHAT.parse(body(stream=True, stream_options=options)))
    frame = usage_frame({"prompt_tokens": 3, "completion_tokens": 1})
    assert tap.feed(frame) == (b"" if hidden else frame)
    assert tap.usage == Usage(input_tokens=3, output_tokens=1)


def test_usage_of_body() -> None:
    completion = ChatScript({"model": "gpt-4o", "messages": MESSAGES}).completion()
    usage = completion["usage"]
    usage["prompt_tokens_details"]["cached_tokens"] = 2
    usage["completion_tokens_details"]["reasoning_tokens"] = 1
    assert OPENAI_CHAT.usage_of_body(orjson.dumps(completion)) == Usage(
        input_tokens=usage["prompt_tokens"] - 2,
        output_tokens=usage["completion_tokens"],
        cache_read_tokens=2,
        reasoning_tokens=1,
    )
    for raw in (b'{"choices": []}', b'{"usage": null}', b"not json", b"[]", b'{"usage": 3}'):
        assert OPENAI_CHAT.usage_of_body(raw) is None, raw


@pytest.mark.parametrize(
    ("error", "shape"),
    [
        (InvalidRequest("bad", param="n", code="c"), ("invalid_request_error", "n", "c")),
        (GatewayError("bad"), ("server_error", None, None)),
    ],
)
def test_error_body_and_stream_error(error: GatewayError, shape: tuple[Any, ...]) -> None:
    kind, param, code = shape
    expected = {"error": {"type": kind, "message": "bad", "param": param, "code": code}}
    assert OPENAI_CHAT.error_body(error) == expected
    frame = OPENAI_CHAT.stream_error(error)
    assert frame.startswith(b'data: {"error":{') and frame.endswith(b"}\n\n")
    assert frame.count(b"\n") == 2
    assert events(frame) == [expected]
    tap = OpenAIChatTap("gpt-4o", hide_usage=True)
    assert tap.feed(frame) is frame
    assert tap.error is True
