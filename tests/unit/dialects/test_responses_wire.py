"""OpenAI Responses as an upstream's wire format (``openai_responses/wire.py``): canonical
requests written as ``/v1/responses`` bodies, and answers read back, checked against the
fake Responses upstream, which validates every body with the ``openai`` SDK's types."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from izzi_proxy import canonical as c
from izzi_proxy import sse
from izzi_proxy.dialects.openai_responses.wire import StreamParser, from_canonical, parse_response
from izzi_proxy.errors import UpstreamConnectionError, UpstreamError
from izzi_proxy.testing import RECEIVED, fake_openai_app

KEY = "sk-upstream-test"
PIXEL = "iVBORw0KGgo="
PDF = "JVBERi0xLjQK"
TIME = c.Tool("get_time", "The time in a zone", {"type": "object", "properties": {"tz": {"type": "string"}},
                                                  "required": ["tz"]})  # fmt: skip
CITY = c.Tool("get_weather", None, {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]})  # fmt: skip


def user(*parts: c.Part | str) -> c.Message:
    return c.Message("user", [c.Text(p) if isinstance(p, str) else p for p in parts])


def request(*messages: c.Message, **kw: Any) -> c.Request:
    return c.Request(model="client-model", messages=list(messages) or [user("Hello")], **kw)


PLAIN = c.Target("gpt-5.1-codex")
REASONING = c.Target("gpt-5.1-codex-reasoning", reasoning=True)


# -- requests ----------------------------------------------------------------------------------


def test_text_system_and_developer() -> None:
    req = request(
        user("Hi", "there"),
        c.Message("assistant", [c.Text("Hello"), c.Text(" you")]),
        c.Message("system", [c.Text("Answer in French")]),
        user("Again"),
        system=["Be brief", "Be kind"],
    )
    body = from_canonical(req, PLAIN)
    assert body == {
        "model": "gpt-5.1-codex",
        "instructions": "Be brief\n\nBe kind",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"},
                                                            {"type": "input_text", "text": "there"}]},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": "Hello you", "annotations": []}]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Answer in French"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Again"}]},
        ],
        "store": False,
    }  # fmt: skip
    assert "stream" not in body
    assert from_canonical(request(stream=True), PLAIN)["stream"] is True


def test_images_and_documents() -> None:
    req = request(user(
        "Look",
        c.Image("image/png", PIXEL),
        c.Image(url="https://example.com/cat.jpg"),
        c.Document("application/pdf", PDF, title="report.pdf"),
        c.Document("application/pdf", PDF),
        c.Document(text="plain words", title="notes"),
        c.Document(url="https://example.com/a.pdf"),
    ))  # fmt: skip
    [message] = from_canonical(req, PLAIN)["input"]
    assert message["content"] == [
        {"type": "input_text", "text": "Look"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}", "detail": "auto"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
        {"type": "input_file", "filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
        {"type": "input_file", "filename": "document.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
        {"type": "input_text", "text": "plain words"},
        {"type": "input_file", "file_url": "https://example.com/a.pdf"},
    ]


def conversation() -> list[c.Message]:
    """A tool round: thinking and calls from Claude (``toolu_`` ids), results with an image."""
    return [
        user("What time is it?"),
        c.Message("assistant", [
            c.Thinking("let me look", signature="sig"),
            c.RedactedThinking("opaque"),
            c.Text("Checking."),
            c.ToolCall("toolu_01abc", "get_time", '{"tz":"UTC"}'),
            c.ToolCall("call_kept", "get_weather", '{"city":"Hue"}'),
        ]),
        c.Message("user", [
            c.ToolResult("toolu_01abc", [c.Text("12:00"), c.Text("UTC")]),
            c.ToolResult("call_kept", [c.Text("sunny"), c.Image("image/png", PIXEL)]),
            c.Text("And tomorrow?"),
        ]),
        c.Message("assistant", [c.Thinking("only thinking")]),
        c.Message("user", [c.ToolResult("call_kept", [], is_error=True)]),
    ]  # fmt: skip


def test_tools_calls_and_results() -> None:
    req = request(*conversation(), tools=[TIME, CITY], tool_choice=c.ToolChoice("tool", "get_time"),
                  parallel_tool_calls=False)  # fmt: skip
    body = from_canonical(req, PLAIN)
    assert body["input"][1:] == [
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_01abc", "name": "get_time", "arguments": '{"tz":"UTC"}'},
        {"type": "function_call", "call_id": "call_kept", "name": "get_weather", "arguments": '{"city":"Hue"}'},
        {"type": "function_call_output", "call_id": "call_01abc", "output": "12:00\nUTC"},
        {"type": "function_call_output", "call_id": "call_kept", "output": [
            {"type": "input_text", "text": "sunny"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PIXEL}", "detail": "auto"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]},
        {"type": "function_call_output", "call_id": "call_kept", "output": "(error)"},
    ]  # fmt: skip
    assert "reasoning" not in orjson.dumps(body).decode()  # thinking never goes to OpenAI
    assert body["tools"] == [
        {"type": "function", "name": "get_time", "parameters": TIME.parameters, "strict": False,
         "description": "The time in a zone"},
        {"type": "function", "name": "get_weather", "parameters": CITY.parameters, "strict": False},
    ]  # fmt: skip
    assert body["tool_choice"] == {"type": "function", "name": "get_time"}
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(("mode", "wire"), [("auto", "auto"), ("any", "required"), ("none", "none")])
def test_tool_choice(mode: str, wire: str) -> None:
    body = from_canonical(request(tools=[TIME], tool_choice=c.ToolChoice(mode)), PLAIN)  # type: ignore[arg-type]
    assert body["tool_choice"] == wire
    assert "tool_choice" not in from_canonical(request(tool_choice=c.ToolChoice(mode)), PLAIN)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reasoning", "effort"),
    [(c.Reasoning(effort="minimal"), "minimal"), (c.Reasoning(budget_tokens=1024), "low"),
     (c.Reasoning(budget_tokens=4096), "medium"), (c.Reasoning(budget_tokens=30000), "high")],
)  # fmt: skip
def test_reasoning_on(reasoning: c.Reasoning, effort: str) -> None:
    body = from_canonical(request(reasoning=reasoning, temperature=0.7, top_p=0.9, max_tokens=1000), REASONING)
    assert body["reasoning"] == {"effort": effort, "summary": "auto"}
    assert "temperature" not in body and "top_p" not in body
    assert body["max_output_tokens"] == 1000


def test_reasoning_off() -> None:
    body = from_canonical(request(reasoning=c.Reasoning(effort="high"), temperature=0.7, top_p=0.9), PLAIN)
    assert "reasoning" not in body
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert "reasoning" not in from_canonical(request(temperature=0.7), REASONING)


def test_max_tokens_raised_to_openais_minimum() -> None:
    assert from_canonical(request(max_tokens=5), PLAIN)["max_output_tokens"] == 16
    assert "max_output_tokens" not in from_canonical(request(), PLAIN)


def test_response_format_and_user() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    body = from_canonical(request(response_format=fmt, user="u-1"), PLAIN)
    assert body["text"] == {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}}
    assert body["user"] == "u-1"
    body = from_canonical(request(response_format={"type": "json_object"}), PLAIN)
    assert body["text"] == {"format": {"type": "json_object"}}
    assert "text" not in from_canonical(request(response_format={"type": "text"}), PLAIN)


def test_stop_is_dropped_with_a_log_line(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="izzi.translate"):
        body = from_canonical(request(stop=["END"]), PLAIN)
    assert "stop" not in body
    assert "translating to openai_responses: dropped stop" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="izzi.translate"):
        from_canonical(request(), PLAIN)
    assert "dropped" not in caplog.text


# -- answers, written by hand --------------------------------------------------------------------


def answer(*output: dict[str, Any], **kw: Any) -> bytes:
    usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60}, "output_tokens": 30,
             "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 130}  # fmt: skip
    return orjson.dumps({"id": "resp_1", "object": "response", "model": "gpt-5.1", "status": "completed",
                         "error": None, "incomplete_details": None, "output": list(output), "usage": usage} | kw)  # fmt: skip


def message(*content: dict[str, Any]) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed", "content": list(content)}


def text(value: str) -> dict[str, Any]:
    return {"type": "output_text", "text": value, "annotations": []}


def test_parse_items_and_usage() -> None:
    resp = parse_response(answer(
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "First"},
                                                        {"type": "summary_text", "text": "second"}]},
        {"id": "rs_2", "type": "reasoning", "summary": [], "encrypted_content": "enc"},
        {"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {"type": "search"}},
        message(text("Hello"), text(" world")),
        {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_time", "arguments": '{"tz":"UTC"}'},
    ), "up")  # fmt: skip
    assert resp.id == "resp_1" and resp.model == "gpt-5.1"
    assert resp.parts == [
        c.Thinking("First\n\nsecond"), c.Text("Hello"), c.Text(" world"),
        c.ToolCall("call_1", "get_time", '{"tz":"UTC"}'),
    ]  # fmt: skip
    assert resp.stop_reason == "tool_use"
    assert resp.usage == c.Usage(input_tokens=40, output_tokens=30, cache_read_tokens=60, reasoning_tokens=20)
    assert resp.usage.prompt_tokens == 100


@pytest.mark.parametrize(
    ("status", "details", "content", "stop"),
    [("completed", None, text("hi"), "end_turn"),
     ("completed", None, {"type": "refusal", "refusal": "I can't"}, "refusal"),
     ("incomplete", {"reason": "max_output_tokens"}, text("hi"), "max_tokens"),
     ("incomplete", {"reason": "content_filter"}, text("hi"), "refusal")],
)  # fmt: skip
def test_parse_stop_reasons(status: str, details: Any, content: dict[str, Any], stop: str) -> None:
    resp = parse_response(answer(message(content), status=status, incomplete_details=details), "up")
    assert resp.stop_reason == stop
    assert resp.parts == [c.Text(content.get("text") or content["refusal"])]


def test_parse_failures_name_the_upstream() -> None:
    error = {"code": "server_error", "message": "boom with key sk-abcdefghijklmnop1234"}
    with pytest.raises(UpstreamError, match=r"'up'.*boom") as caught:
        parse_response(answer(status="failed", error=error), "up")
    assert "sk-abcdefghijklmnop1234" not in caught.value.message
    with pytest.raises(UpstreamError, match="'up'"):
        parse_response(answer(message(text("hi")), error={"message": "late"}), "up")
    with pytest.raises(UpstreamError, match="did not answer with a Response"):
        parse_response(b"<html>nope</html>", "up")
    with pytest.raises(UpstreamError, match="did not answer with a Response"):
        parse_response(answer({"type": "message", "content": "not a list"}), "up")


# -- streams, written by hand --------------------------------------------------------------------


def frames(*events: dict[str, Any]) -> list[sse.SSEEvent]:
    return [sse.SSEEvent(e["type"], orjson.dumps({**e, "sequence_number": i}).decode()) for i, e in enumerate(events)]


def feed(parser: StreamParser, events: list[sse.SSEEvent]) -> list[c.StreamEvent]:
    return [out for event in events for out in parser.feed(event)]


CREATED = {"type": "response.created", "response": {"id": "resp_9", "model": "gpt-5.1", "status": "in_progress"}}


def completed(**kw: Any) -> dict[str, Any]:
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5}
    return {"type": "response.completed", "response": {"id": "resp_9", "model": "gpt-5.1", "status": "completed",
                                                       "usage": usage} | kw}  # fmt: skip


def test_stream_without_done_events_still_stops_blocks() -> None:
    parser = StreamParser("up")
    events = feed(parser, frames(
        CREATED,
        {"type": "response.in_progress", "response": CREATED["response"]},
        {"type": "response.output_item.added", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning",
                                                                            "summary": []}},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "a"},
        {"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 1, "delta": "b"},
        {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "Hi"},
        {"type": "response.web_search_call.searching", "output_index": 2, "item_id": "ws_1"},
        {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "!"},
        {"type": "response.output_item.added", "output_index": 3, "item": {
            "id": "fc_1", "type": "function_call", "call_id": "call_7", "name": "get_time", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "output_index": 3, "delta": '{"tz":'},
        {"type": "response.function_call_arguments.delta", "output_index": 3, "delta": '"UTC"}'},
        {"type": "keepalive"},
        completed(),
    ))  # fmt: skip
    assert events == [
        c.Start("resp_9", "gpt-5.1"),
        c.BlockStart(0, c.Thinking("")), c.Delta(0, "thinking", "a"), c.Delta(0, "thinking", "\n\n"),
        c.Delta(0, "thinking", "b"), c.BlockStop(0),
        c.BlockStart(1, c.Text("")), c.Delta(1, "text", "Hi"), c.Delta(1, "text", "!"), c.BlockStop(1),
        c.BlockStart(2, c.ToolCall("call_7", "get_time", "")), c.Delta(2, "arguments", '{"tz":'),
        c.Delta(2, "arguments", '"UTC"}'), c.BlockStop(2),
        c.Finish("tool_use"), c.UsageUpdate(c.Usage(input_tokens=6, output_tokens=5, cache_read_tokens=4)), c.End(),
    ]  # fmt: skip
    assert parser.done and parser.usage_final and parser.usage == c.Usage(6, 5, 4)
    assert parser.feed(frames(completed())[0]) == []  # nothing after the end
    parser.end_of_stream()


def test_stream_without_deltas_is_written_from_done_events() -> None:
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_7", "name": "get_time", "arguments": '{"a":1}'}
    events = feed(StreamParser("up"), frames(
        CREATED,
        {"type": "response.content_part.added", "output_index": 0, "content_index": 0, "part": text("")},
        {"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": "Whole"},
        {"type": "response.content_part.done", "output_index": 0, "content_index": 0, "part": text("Whole")},
        {"type": "response.output_item.done", "output_index": 0, "item": message(text("Whole"), text("More"))},
        {"type": "response.output_item.done", "output_index": 1, "item": {
            "id": "rs_1", "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": "raw thought"}]}},
        {"type": "response.output_item.done", "output_index": 2, "item": call},
        {"type": "response.output_item.added", "output_index": 3, "item": {**message(), "status": "in_progress"}},
        {"type": "response.refusal.delta", "output_index": 3, "content_index": 0, "delta": "No."},
        completed(status="incomplete", incomplete_details={"reason": "max_output_tokens"}),
    ))  # fmt: skip
    assert events[1:] == [
        c.BlockStart(0, c.Text("")), c.Delta(0, "text", "Whole"), c.BlockStop(0),
        c.BlockStart(1, c.Text("")), c.Delta(1, "text", "More"), c.BlockStop(1),
        c.BlockStart(2, c.Thinking("")), c.Delta(2, "thinking", "raw thought"), c.BlockStop(2),
        c.BlockStart(3, c.ToolCall("call_7", "get_time", "")), c.Delta(3, "arguments", '{"a":1}'), c.BlockStop(3),
        c.BlockStart(4, c.Text("")), c.Delta(4, "text", "No."), c.BlockStop(4),
        c.Finish("max_tokens"), c.UsageUpdate(c.Usage(6, 5, 4)), c.End(),
    ]  # fmt: skip


def test_stream_refusal_is_the_stop_reason() -> None:
    events = feed(StreamParser("up"), frames(
        CREATED,
        {"type": "response.refusal.delta", "output_index": 0, "content_index": 0, "delta": "I can't help"},
        completed(),
    ))  # fmt: skip
    assert c.Finish("refusal") in events


@pytest.mark.parametrize(
    "event",
    [{"type": "error", "code": "server_error", "message": "bad key sk-abcdefghijklmnop1234", "param": None},
     {"type": "error", "error": {"type": "server_error", "message": "bad key sk-abcdefghijklmnop1234"}},
     {"type": "response.failed", "response": {"id": "r", "status": "failed",
                                              "error": {"code": "x", "message": "bad key sk-abcdefghijklmnop1234"}}}],
)  # fmt: skip
def test_stream_error_events_raise_masked(event: dict[str, Any]) -> None:
    parser = StreamParser("up")
    feed(parser, frames(CREATED))
    with pytest.raises(UpstreamError, match="'up' failed mid-stream: bad key") as caught:
        feed(parser, frames(event))
    assert "sk-abcdefghijklmnop1234" not in caught.value.message
    assert not parser.done


def test_stream_cut_short_is_a_connection_error() -> None:
    parser = StreamParser("up")
    feed(parser, frames(CREATED, {"type": "response.output_text.delta", "output_index": 0, "delta": "Hi"}))
    with pytest.raises(UpstreamConnectionError):
        parser.end_of_stream()


# -- against the fake Responses upstream ---------------------------------------------------------


@pytest.fixture
async def server(aiohttp_server) -> TestServer:
    return await aiohttp_server(fake_openai_app(api_key=KEY))


async def post(server: TestServer, body: dict[str, Any]) -> bytes:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/v1/responses"), data=orjson.dumps(body), headers=headers) as answer,
    ):
        data = await answer.read()
        assert answer.status == 200, data  # the fake checks every body against the SDK's types
        return data


def events_of(data: bytes, parser: StreamParser | None = None) -> list[c.StreamEvent]:
    parser = parser or StreamParser("up")
    out = [e for event in sse.iter_events(data) for e in parser.feed(event)]
    parser.end_of_stream()
    return out


def assemble(events: list[c.StreamEvent]) -> c.Response:
    """The answer a stream tells, checking its shape: Start first; blocks numbered 0, 1, 2…
    in order, one open at a time, each stopped before Finish; End last."""
    assert isinstance(events[0], c.Start) and isinstance(events[-1], c.End)
    parts: list[c.Part] = []
    open_: int | None = None
    finish: c.Finish | None = None
    usage = c.Usage()
    for event in events[1:-1]:
        if isinstance(event, c.BlockStart):
            assert open_ is None and event.index == len(parts) and finish is None
            parts.append(event.part)
            open_ = event.index
        elif isinstance(event, c.Delta):
            assert event.index == open_
            part = parts[event.index]
            if isinstance(part, c.ToolCall):
                part.arguments += event.value
            else:
                part.text += event.value  # type: ignore[union-attr]
        elif isinstance(event, c.BlockStop):
            assert event.index == open_
            open_ = None
        elif isinstance(event, c.Finish):
            assert open_ is None
            finish = event
        elif isinstance(event, c.UsageUpdate):
            usage = event.usage
    assert finish is not None
    start = events[0]
    return c.Response(start.id, start.model, parts, finish.stop_reason, usage)


async def both(server: TestServer, req: c.Request, target: c.Target) -> tuple[c.Response, c.Response]:
    """The plain answer and the streamed one (read back as an answer) for ``req``."""
    req.stream = False
    plain = parse_response(await post(server, from_canonical(req, target)), "up")
    req.stream = True
    streamed = assemble(events_of(await post(server, from_canonical(req, target))))
    return plain, streamed


async def test_fake_text_with_image_and_documents(server) -> None:
    req = request(
        user("Describe", c.Image("image/png", PIXEL), c.Image(url="https://example.com/x.png"),
             c.Document("application/pdf", PDF, title="r.pdf"), c.Document(text="notes"),
             c.Document(url="https://example.com/a.pdf")),
        system=["Be brief"], max_tokens=5, stop=["END"], temperature=0.5, top_p=0.5, user="u-1",
    )  # fmt: skip
    for resp in await both(server, req, PLAIN):
        assert resp.parts == [c.Text("Echo: Describe notes [2 image(s)]")]
        assert resp.stop_reason == "end_turn" and resp.model == "gpt-5.1-codex" and resp.id.startswith("resp_")
        assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0 and resp.usage.cache_read_tokens == 0
    sent = server.app[RECEIVED][-1].body
    assert sent["store"] is False and sent["max_output_tokens"] == 16 and "stop" not in sent


async def test_fake_tool_calls_reassembled(server) -> None:
    req = request(user("What time is it?"), tools=[TIME, CITY], tool_choice=c.ToolChoice("any"))
    for resp in await both(server, req, c.Target("gpt-5.1-codex-tools")):
        calls = [p for p in resp.parts if isinstance(p, c.ToolCall)]
        assert [(p.name, orjson.loads(p.arguments)) for p in calls] == [
            ("get_time", {"tz": "Hanoi"}), ("get_weather", {"city": "Hanoi"})]  # fmt: skip
        assert all(p.id.startswith("call_") for p in calls)
        assert resp.stop_reason == "tool_use"


async def test_fake_takes_results_for_translated_ids(server) -> None:
    """A Claude conversation (``toolu_`` ids, signed thinking, an image in a result) is one the
    fake accepts: each output answers a call it saw, and no foreign reasoning is sent."""
    req = request(*conversation()[:3], tools=[TIME, CITY])
    for resp in await both(server, req, PLAIN):
        assert resp.parts == [c.Text("Echo: And tomorrow?")]
    sent = server.app[RECEIVED][-1].body
    assert [i["type"] for i in sent["input"]].count("function_call_output") == 2
    req = request(*conversation()[:2], c.Message("user", conversation()[2].parts[:2]), tools=[TIME, CITY])
    for resp in await both(server, req, c.Target("gpt-5.1-codex-tools")):
        assert resp.parts == [c.Text("Tool results: 12:00\nUTC; sunny")]
        assert resp.stop_reason == "end_turn"


async def test_fake_reasoning_summary_is_thinking(server) -> None:
    req = request(user("Think"), reasoning=c.Reasoning(budget_tokens=2000), temperature=0.3)
    for resp in await both(server, req, REASONING):
        assert resp.parts == [c.Thinking("Thinking (low) about: Echo: Think"), c.Text("Echo: Think")]
        assert resp.usage.reasoning_tokens > 0
        assert resp.usage.output_tokens > resp.usage.reasoning_tokens
    sent = server.app[RECEIVED][-1].body
    assert sent["reasoning"] == {"effort": "low", "summary": "auto"} and "temperature" not in sent
    # not marked reasoning: no effort asked, no reasoning item comes back
    for resp in await both(server, req, c.Target("gpt-5.1-codex-reasoning")):
        assert resp.parts == [c.Text("Echo: Think")] and resp.usage.reasoning_tokens == 0


async def test_fake_cached_input_is_split_out(server) -> None:
    body = from_canonical(request(user("Hello " * 40)), PLAIN) | {"prompt_cache_key": "conversation-1"}
    plain = parse_response(await post(server, body), "up")
    streamed = assemble(events_of(await post(server, body | {"stream": True})))
    for resp in (plain, streamed):
        total = resp.usage.prompt_tokens
        assert resp.usage.cache_read_tokens == total // 2 > 0
        assert resp.usage.input_tokens == total - total // 2


async def test_fake_length_is_max_tokens(server) -> None:
    for resp in await both(server, request(max_tokens=20), c.Target("gpt-5.1-codex-length")):
        assert resp.stop_reason == "max_tokens" and resp.parts == [c.Text("Echo: Hello")]


@pytest.mark.parametrize("after", [0, 1, 3])
async def test_fake_stream_error_raises(server, after: int) -> None:
    data = await post(server, from_canonical(request(stream=True), c.Target(f"x-stream_error_after_{after}")))
    parser = StreamParser("fake")
    seen: list[c.StreamEvent] = []
    with pytest.raises(UpstreamError, match="Upstream 'fake' failed mid-stream: Mock upstream error 500"):
        for event in sse.iter_events(data):
            seen += parser.feed(event)
    assert sum(isinstance(e, c.Delta) for e in seen) == after
    assert not parser.done and parser.usage is None


async def test_fake_cut_stream_is_not_done(server) -> None:
    data = await post(server, from_canonical(request(stream=True), c.Target("x-cut_after_2")))
    with pytest.raises(UpstreamConnectionError):
        events_of(data)


def splits(data: bytes) -> Iterator[list[bytes]]:
    for i in range(1, len(data)):
        yield [data[:i], data[i:]]
    yield [data[i : i + 1] for i in range(len(data))]


def parse_chunks(chunks: list[bytes]) -> list[c.StreamEvent]:
    """A stream as the gateway reads it: bytes in chunks, lines split, events decoded."""
    parser, lines, decoder = StreamParser("up"), sse.LineSplitter(), sse.EventDecoder()
    out: list[c.StreamEvent] = []
    for line in [*(line for chunk in chunks for line in lines.feed(chunk)), *lines.finish(), b""]:
        if (event := decoder.decode_line(line)) is not None:
            out += parser.feed(event)
    assert parser.done
    return out


async def test_fake_stream_split_anywhere(server) -> None:
    req = request(user("Split me, with ünïcödé ✓"), tools=[TIME], reasoning=c.Reasoning(effort="low"), stream=True)
    data = await post(server, from_canonical(req, c.Target("gpt-5.1-codex-reasoning-tools", reasoning=True)))
    whole = parse_chunks([data])
    kinds = {type(p.part) for p in whole if isinstance(p, c.BlockStart)}
    assert kinds == {c.Thinking, c.ToolCall}
    for chunks in splits(data):
        assert parse_chunks(chunks) == whole, [len(chunk) for chunk in chunks]
